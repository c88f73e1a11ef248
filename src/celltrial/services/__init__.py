"""Service functions the web app (and the CLI) call: accounts, data entry, reads of the study.

Each write opens one audited session (:func:`celltrial.store.database.study_session`), so every
change to study data reaches the audit log with who, when, before, after and why. Nothing here
knows about HTTP.
"""
