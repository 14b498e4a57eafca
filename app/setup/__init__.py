"""`persais setup`: one-time steps that create what Persais needs at outside services.

`github_app` holds the App's manifest (the one list of its permissions and events) and
trades GitHub's code for the App's credentials; `manifest_page` serves the local page
with the button and takes GitHub's answer; `env_file` writes the credentials without
losing what `.env` already holds.
"""
