"""One module per page: the code behind the thin scripts in ``frontend/app_pages/``."""
