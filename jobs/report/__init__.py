"""The daily report: what happened in the period, as text, HTML and JSON, mailed as one digest.

`job` assembles the sections: job health, blocks, events and scans from the shared tables,
and the sections the other jobs provide (login failures' auth tables, quarantine and
integrity results, scan-history charts).
"""
