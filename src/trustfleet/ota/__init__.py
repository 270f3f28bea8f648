"""The update side of TUF: repositories, releases, deltas, manifests and campaign rules.

What other packages use from the private modules is exported here.
"""

from trustfleet.ota._repofiles import RepoFiles, hash_file

__all__ = ["RepoFiles", "hash_file"]
