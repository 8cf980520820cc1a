"""Watched files and directories (lfd's LF_DIRWATCH_FILE, csf.dirwatch): a short list of paths
looked at every 5 minutes (content, mode, owner, links, times, extended attributes, ACLs,
capabilities and flags of each file; directories recursively), compared with the last look,
and every change mailed by name and attribute. The scan and the comparison are the integrity
job's (jobs/integrity), with its quick mode: a file is hashed again only when its inode, size
or times moved, so /etc every 5 minutes costs little. settings: [watch]; job: the job."""
