"""The browser UI of Pareto MTL Lab: a Streamlit app that talks to the REST API only."""
