"""Routes: the page, the nickname form, the announcements, and the WebSocket."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("nickname/", views.nickname),
    path("announce/<room>/", views.announce),
    path("ws/<room>/", views.chat),
]
