"""The users the `gateway` example's Rust side vouches for."""

from django.contrib.auth.backends import RemoteUserBackend


class GatewayUserBackend(RemoteUserBackend):
    """Creates each user the gateway names on first sight (RemoteUserBackend's default).

    In this demo every such user may use the admin: the gateway's own user table is the
    authority. A real project would map the gateway's roles (an environ key of its own,
    `gateway.roles` say) to Django's flags or groups here.
    """

    def configure_user(self, request, user, created=True):
        if created:
            user.is_staff = True
            user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        return user
