"""Static files storage: hashed, compressed names once collected, plain names before.

`collectstatic` (the image runs it at build) writes every file under a name carrying a hash of
its content, with gzip and brotli copies beside it, and a manifest mapping the names: WhiteNoise
then serves them compressed with a year's cache lifetime, since a changed file gets a new name.

A checkout (`make run`, the test suite) has no manifest. Django's manifest storage would then
refuse to render any page with DEBUG off ("Missing staticfiles manifest entry"), so without a
manifest this one gives the plain names, which WhiteNoise serves from the apps' static folders.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class CollectedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    def stored_name(self, name):
        if not self.hashed_files:  # no manifest: collectstatic has not run here
            return name
        return super().stored_name(name)
