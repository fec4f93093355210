"""Building blocks of the UI: settings, the HTTP client, charts, forms and page views."""
