"""Routes of the in-process Django tests."""

from django.urls import path

from . import views

urlpatterns = [
    path("echo/<room>/", views.echo),
    path("login/", views.login),
    path("members/", views.members),
    path("any-origin/", views.any_origin),
    path("listed-origins/", views.listed_origins),
    path("options/", views.options),
    path("transaction/", views.transaction),
    path("fails/", views.fails),
    path("room/<name>/", views.room),
]
