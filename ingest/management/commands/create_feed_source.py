from django.core.management.base import BaseCommand, CommandError

from ingest.exceptions import FeedSourceExists, FeedSourceInvalid
from ingest.models import FeedSource
from ingest.sources import feed_source_create, feed_source_rotate_token


class Command(BaseCommand):
    help = (
        "Create a feed source and print its bearer token once (alone on the last line). "
        "With --rotate, give an existing source a new token instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--require-signature",
            action="store_true",
            help="require an X-Signature HMAC-SHA256 header; the secret is printed once",
        )
        parser.add_argument(
            "--timestamped-signatures-only",
            action="store_true",
            help="refuse the body-only 'sha256=<hex>' signature; accept only 't=<unix seconds>,"
            "sha256=<hex>'",
        )
        parser.add_argument(
            "--rotate", action="store_true", help="rotate an existing source's token"
        )

    def handle(
        self,
        *args,
        name,
        require_signature=False,
        timestamped_signatures_only=False,
        rotate=False,
        **options,
    ):
        if rotate:
            source = FeedSource.objects.filter(name=name).first()
            if source is None:
                raise CommandError(f"no feed source named {name!r}; create it without --rotate")
            token = feed_source_rotate_token(source=source)
            until = source.previous_token_valid_until
            self.stdout.write(
                f"Rotated the token of feed source {name!r}; the old token works until "
                f"{until.isoformat(timespec='seconds') if until else 'now'}."
            )
        else:
            try:
                issued = feed_source_create(
                    name=name,
                    require_signature=require_signature,
                    accept_body_signature=not timestamped_signatures_only,
                )
            except FeedSourceExists:
                raise CommandError(
                    f"a feed source named {name!r} already exists; "
                    "use --rotate to issue a new token"
                ) from None
            except FeedSourceInvalid as error:
                raise CommandError(str(error)) from None
            token = issued.token
            self.stdout.write(f"Created feed source {name!r}.")
            if require_signature:
                self.stdout.write(
                    "Signing secret (shown once; send X-Signature: t=<unix seconds>,"
                    "sha256=<hex HMAC of '<t>.<body>'> or sha256=<hex HMAC of the body>, "
                    "see docs/signing.md):"
                )
                self.stdout.write(issued.signing_secret)
        self.stdout.write("Bearer token (shown once, store it now):")
        self.stdout.write(token)
