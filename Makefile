# The two entry points named in README.md: `make demo` and `make test`.
# Both build everything they need from a fresh clone: Debian packages (apt),
# the virtualenv at .venv (with the cffi accelerators compiled), the guests.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the project and its tests use (checked, installed only when missing).
APT_PACKAGES := xenstore-utils libxen-dev xen-utils-4.17 gcc make qemu-system-x86 qemu-utils

.PHONY: demo test deps venv guests linux-assets bench clean

demo: venv guests
	$(VENV)/bin/xl create -c examples/demo.cfg

test: deps venv guests linux-assets
	$(PY) -m pytest -q

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py pyproject.toml $(wildcard xen_core/accel/*.c xen_core/accel/*.h xen_core/accel/build_*.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi 'unicorn>=2.1,<2.2'
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	touch $@

guests:
	@if [ -f guests/Makefile ]; then $(MAKE) -s -C guests; fi

# Debian's kernel + busybox initramfs (cached in guests/build/linux) and the
# firmware-boot disk, for the HVM (QEMU) and PVH Linux guests.
linux-assets: venv
	$(PY) guests/linux/build.py
	$(MAKE) -s -C guests/bootsector

bench: venv guests
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
	@if [ -f guests/Makefile ]; then $(MAKE) -s -C guests clean; fi
