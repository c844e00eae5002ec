"""Browser pages: the camera page, the collection page, the management console and the video scans page."""

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


class ConsolePage(tornado.web.RequestHandler):
    """The management console: every collection, to create, open or delete."""

    def get(self) -> None:
        self.render("console.html")


class ConsoleCollectionPage(tornado.web.RequestHandler):
    """One collection in the console: upload, edit and delete its items."""

    def get(self, collection: str) -> None:
        self.render("console_collection.html", collection=collection)


class TryPhotoPage(tornado.web.RequestHandler):
    """Upload a photo, see what it matched: outlines and inliers."""

    def get(self) -> None:
        config = self.application.settings["config"]
        collection = self.get_query_argument("collection", "") or config.server.demo_collection
        self.render("try.html", collection=collection)


class DashboardPage(tornado.web.RequestHandler):
    """Usage statistics as plots."""

    def get(self) -> None:
        self.render("dashboard.html", collection=self.get_query_argument("collection", ""))


class ScansPage(tornado.web.RequestHandler):
    def get(self) -> None:
        config = self.application.settings["config"]
        collection = self.get_query_argument("collection", "") or config.server.demo_collection
        self.render("scans.html", collection=collection, scan="")


class ScanPage(tornado.web.RequestHandler):
    def get(self, scan: str) -> None:
        config = self.application.settings["config"]
        self.render("scans.html", collection=config.server.demo_collection, scan=scan)
