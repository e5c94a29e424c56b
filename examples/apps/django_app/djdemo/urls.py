"""djdemo's URLs. Every link is built with reverse() or {% url %}, so each carries the
prefix the project is mounted under."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/status/", views.api_status, name="api-status"),
    path("guestbook/", views.guestbook, name="guestbook"),
    path("export.csv", views.export, name="export"),
    path("download/", views.download, name="download"),
    path("admin/", admin.site.urls),
]
