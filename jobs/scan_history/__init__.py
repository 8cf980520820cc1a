"""The scan-history analysis: what the listener (and imported PortSentry history files) saw,
read as an analyst would.

`job` imports PortSentry files (the format lives in nightwarden.lib.portsentry), `analysis`
builds the pandas tables (top sources, ports, subnets, scan types, trends, repeat offenders,
danger levels, recommendations) and charts, `job` renders and mails them; `--apply` blocks
the recommendations through the shared block library. `store` holds its queries.
"""
