# nightwarden: make demo | make test | make bench
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
# Debian packages the tests use: real firewalls, real peers.
TEST_DEBS := nftables libnftables1 iptables ipset iproute2 libxtables12 libip4tc2 libip6tc2 gcc nmap logrotate tar util-linux msmtp acl libcap2-bin e2fsprogs aide cron systemd openssh-server nats-server
TEST_CMDS := nft iptables ipset ip gcc nmap logrotate tar unshare msmtp setfacl setcap chattr aide crontab systemd-analyze sshd nats-server

.PHONY: demo demo-fleet test test-quick lint bench debs bench-debs clean

$(BIN)/nightwarden: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# The daily run on the embedded default configuration, in a sandbox directory:
# dry-run firewall, mail to an mbox file, nothing outside $(DEMO)/ is touched.
demo: $(BIN)/nightwarden
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/etc
	@printf '# the demo scanner comes from 127.x addresses\n[firewall]\nprotect_loopback = false\n[metrics]\ntextfile_dir = "/metrics"\n' > $(DEMO)/etc/nightwarden.toml
	@echo "== sandbox: $(DEMO)/ (dry-run firewall, mail into an mbox file)"
	$(BIN)/nightwarden --sandbox $(DEMO) firewall start
	$(BIN)/nightwarden --sandbox $(DEMO) block 203.0.113.7 203.0.113.23 --ttl 6h --reason "demo: ssh brute force"
	$(BIN)/nightwarden --sandbox $(DEMO) deny 198.51.100.0/24 --comment "demo: hostile network"
	$(BIN)/nightwarden --sandbox $(DEMO) allow 203.0.113.200 --comment "demo: office"
	$(BIN)/nightwarden --sandbox $(DEMO) block 203.0.113.200 || [ $$? -eq 79 ]   # 79: refused, it is allowed
	$(BIN)/nightwarden --sandbox $(DEMO) blocks
	@mkdir -p $(DEMO)/tmp/.x $(DEMO)/dev/shm && cp /bin/true $(DEMO)/tmp/.x/kworker && \
	  printf '<?php system($$_GET["c"]); ?>\n' > $(DEMO)/tmp/upload.php && \
	  printf 'harmless\n' > $(DEMO)/tmp/notes.txt && ln -s /etc/shadow $(DEMO)/tmp/shadow-link && \
	  if [ "$$(id -u)" = 0 ]; then chown -hR nobody $(DEMO)/tmp/*  $(DEMO)/tmp/.x; fi
	@echo "== planted in $(DEMO)/tmp: a hidden dir with an ELF binary, a PHP shell, a symlink, a text file"
	@mkdir -p $(DEMO)/usr/bin $(DEMO)/usr/sbin $(DEMO)/usr/lib $(DEMO)/usr/local/bin \
	  $(DEMO)/usr/local/sbin $(DEMO)/boot && cp /bin/ls /bin/cat /bin/sh $(DEMO)/usr/bin/ && \
	  printf 'PermitRootLogin no\n' > $(DEMO)/etc/sshd_config
	@echo "== integrity: a key (passphrase from \$$NIGHTWARDEN_INTEGRITY_PASSPHRASE for the demo), a snapshot, then a change"
	NIGHTWARDEN_INTEGRITY_PASSPHRASE="demo passphrase" $(BIN)/nightwarden --sandbox $(DEMO) integrity keygen
	NIGHTWARDEN_INTEGRITY_PASSPHRASE="demo passphrase" $(BIN)/nightwarden --sandbox $(DEMO) integrity init
	@chmod u+s $(DEMO)/usr/bin/cat && printf 'PermitRootLogin yes\n' > $(DEMO)/etc/sshd_config && \
	  cp /bin/true $(DEMO)/usr/local/bin/helper
	@mkdir -p $(DEMO)/var/log && $(BIN)/python bench/sample_authlog.py $(DEMO)/var/log/auth.log --lines 20000 > /dev/null
	@echo "== a day of a server's auth.log ($(DEMO)/var/log/auth.log: sshd brute force, sudo, cron) for the login-failure job"
	$(BIN)/nightwarden --sandbox $(DEMO) login-failures --no-mail || [ $$? -lt 64 ]   # 1: it blocked
	@echo "== a simulated port scanner against the listener (in a private network namespace when root)"
	@if [ "$$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then \
	  fw=$$(command -v nft >/dev/null && echo nftables || echo dryrun); \
	  unshare -n sh -c "ip link set lo up && NIGHTWARDEN_SANDBOX_FIREWALL=$$fw $(BIN)/python bench/demo_listener.py $(DEMO)"; \
	else $(BIN)/python bench/demo_listener.py $(DEMO); fi
	@$(BIN)/python bench/sample_history.py $(DEMO)/portsentry.history
	@echo "== a PortSentry history of the last day ($(DEMO)/portsentry.history) for the scan-history analysis"
	$(BIN)/nightwarden --sandbox $(DEMO) scan-history --import $(DEMO)/portsentry.history --no-mail > /dev/null
	$(BIN)/nightwarden --sandbox $(DEMO) daily || [ $$? -lt 64 ]   # 1-63: findings, not failures
	$(BIN)/nightwarden --sandbox $(DEMO) quarantine list
	$(BIN)/nightwarden --sandbox $(DEMO) purge
	@echo "== the morning report opens with what needs attention (the mail's subject says it in one line):"
	@sed -n '1,/^$$/p' $$(ls $(DEMO)/reports/report-*.txt | tail -1)
	$(BIN)/nightwarden --sandbox $(DEMO) status
	@echo "== metrics for node_exporter's textfile collector ($(DEMO)/metrics/nightwarden.prom):"
	@grep -v '^#' $(DEMO)/metrics/nightwarden.prom | head -12
	@echo "== what ran (nightwarden runs -n 1):"
	@$(BIN)/nightwarden --sandbox $(DEMO) runs -n 1
	@echo "== done. report: $$(ls $(DEMO)/reports/report-*.txt); integrity: $$(ls $(DEMO)/reports/integrity-*.txt)"
	@echo "   quarantine: $(DEMO)/state/quarantine/ (tar -tvf to list, nightwarden quarantine restore ID)"
	@echo "   mail:   $(DEMO)/state/mail/mbox ($$(grep -c '^From ' $(DEMO)/state/mail/mbox) message(s))"
	@echo "   log:    $(DEMO)/log/nightwarden.log; state: $(DEMO)/state/state.db"

# Installs the Debian packages the tests need when one is missing and we are root.
debs:
	@missing=""; for c in $(TEST_CMDS); do PATH=$$PATH:/usr/sbin:/sbin command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ] || [ ! -e /usr/lib/x86_64-linux-gnu/libxtables.so.12 -a ! -e /usr/lib/aarch64-linux-gnu/libxtables.so.12 ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(TEST_DEBS); \
	  else echo "missing:$$missing (tests that need them are skipped; run as root to install)"; fi; \
	fi

# ruff: the lint rules and the format, as configured in pyproject.toml.
lint: $(BIN)/nightwarden
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# As root, the whole suite runs in a private network namespace (loopback only);
# firewall tests add a fresh namespace of their own for each test.
test: debs $(BIN)/nightwarden lint
	@if [ "$$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then \
	  unshare -n sh -c 'ip link set lo up && exec $(BIN)/python -m pytest $(PYTEST_ARGS)'; \
	else \
	  $(BIN)/python -m pytest $(PYTEST_ARGS); \
	fi

# Three hosts in network namespaces sharing a block through the fleet: a broker (nats-server)
# and an authority in a fourth namespace. Root only (namespaces, nftables); all gone at the end.
demo-fleet: debs $(BIN)/nightwarden
	$(BIN)/python bench/demo_fleet.py

# The tests that need neither root nor a peer tool nor much time (markers in pyproject.toml).
test-quick: $(BIN)/nightwarden lint
	$(BIN)/python -m pytest -q -m "not root and not netns and not peer and not slow" $(PYTEST_ARGS)

# The peers the benchmarks compare with (command:package): each missing one is installed,
# and the benchmarks stop with an error when one cannot be had.
BENCH_PEERS := aide:aide portsentry:portsentry fail2ban-regex:fail2ban fail2ban-server:fail2ban taskset:util-linux
bench-debs:
	@missing=""; for pair in $(BENCH_PEERS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "benchmark peers missing:$$missing (install them as root)"; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	    || { echo "cannot install the benchmark peers:$$missing"; exit 1; }; fi

bench: debs bench-debs $(BIN)/nightwarden
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/logs.py
	$(BIN)/python bench/logs_mixed.py
	$(BIN)/python bench/corpus.py
	unshare -n sh -c 'ip link set lo up && exec $(BIN)/python bench/firewall_batch.py'
	unshare -n sh -c 'ip link set lo up && exec $(BIN)/python bench/purge.py'
	$(BIN)/python bench/quarantine.py
	$(BIN)/python bench/integrity.py
	$(BIN)/python bench/listener.py
	$(BIN)/python bench/realtime.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/lists.py
	$(BIN)/python bench/processes.py
	$(BIN)/python bench/fleet.py

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info .pytest_cache
