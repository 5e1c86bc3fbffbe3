"""Plain-Python helpers behind the Streamlit dashboard (`app.py`, `pages/`).

Nothing here imports Streamlit: these modules read run directories, launch background jobs and
shape data for the pages, so they are tested like the rest of `cxr`.
"""
