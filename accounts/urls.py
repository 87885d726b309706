from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import account_views, views

urlpatterns = [
    path("", account_views.account, name="account"),
    path("devices/forget/", account_views.devices_forget_all, name="devices_forget_all"),
    path("devices/<int:device_id>/forget/", account_views.device_forget, name="device_forget"),
    path("data/", account_views.data_download, name="account_data"),
    path("delete/", account_views.account_delete, name="account_delete"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"
    ),
]
