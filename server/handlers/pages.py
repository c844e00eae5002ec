"""Browser pages: the camera page, the collection page and the video scans page."""

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


class ScansPage(tornado.web.RequestHandler):
    def get(self) -> None:
        config = self.application.settings["config"]
        collection = self.get_query_argument("collection", "") or config.server.demo_collection
        self.render("scans.html", collection=collection, scan="")


class ScanPage(tornado.web.RequestHandler):
    def get(self, scan: str) -> None:
        config = self.application.settings["config"]
        self.render("scans.html", collection=config.server.demo_collection, scan=scan)
