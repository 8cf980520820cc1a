"""Connection tracking (lfd's CT_LIMIT family): an address holding more connections to this
host than a limit is blocked. The count comes from the kernel's socket table (and from
conntrack when it is loaded); the listener counts every `interval` seconds as it runs, the
`connections` job every minute when it does not. settings: the [connections] schema; count:
the counting; job: the job and the check both use; follow: the listener's thread."""
