"""Browser pages: the camera page and the collection page."""

from __future__ import annotations

import tornado.web


class CameraPage(tornado.web.RequestHandler):
    def get(self) -> None:
        config = self.application.settings["config"]
        collection = self.get_query_argument("collection", "") or config.server.demo_collection
        self.render("camera.html", collection=collection)


class CollectionPage(tornado.web.RequestHandler):
    def get(self) -> None:
        config = self.application.settings["config"]
        collection = self.get_query_argument("collection", "") or config.server.demo_collection
        self.render("collection.html", collection=collection)
