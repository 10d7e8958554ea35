"""`ccl view`: a browser page on a results/{scene} folder (viser), its session logic apart from the page.

`ccl.view.session` opens the folder, renders a view and answers queries with ccl.query's functions;
`ccl.view.server` is the page. `import ccl.view` is light: viser and torch load inside the functions.
"""

from ccl.view.session import Answer, Frame, ViewSession, camera_from_view, open_session

__all__ = ["Answer", "Frame", "ViewSession", "camera_from_view", "open_session"]
