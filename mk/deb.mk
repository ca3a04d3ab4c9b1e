# `make deb`: build the Debian package build/deb/sipxcc_<version>_all.deb with
# Debian's own tools and python3, then check it with lintian.

DEB_VERSION = $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
DEB_OUT := build/deb
DEB_TREE = $(DEB_OUT)/sipxcc-$(DEB_VERSION)
DEB_FILE = $(DEB_OUT)/sipxcc_$(DEB_VERSION)_all.deb
# Build-Depends of debian/control, plus lintian.
DEB_BUILD_DEPS := debhelper dh-python pybuild-plugin-pyproject python3-all \
	python3-setuptools lintian
# Debian's tools and python3 only: pyenv's or the venv's python3 come first on
# PATH on the development machines and must not leak into the build.
DEB_ENV := env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$(CURDIR)/$(DEB_OUT) \
	LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive
DEB_EXCLUDES := --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
	--exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
	--exclude=.ruff_cache --exclude=.hypothesis --exclude=./.demo --exclude=dropin.cache \
	--exclude='*.deb'

.PHONY: deb deb-build-deps

deb-build-deps:
	@$(DEB_ENV) dpkg-checkbuilddeps debian/control 2>/dev/null && command -v lintian >/dev/null \
	|| $(DEB_ENV) apt-get install -y --no-install-recommends $(DEB_BUILD_DEPS) \
	|| { $(DEB_ENV) apt-get update && \
	     $(DEB_ENV) apt-get install -y --no-install-recommends $(DEB_BUILD_DEPS); }

deb: deb-build-deps
	test -n "$(DEB_VERSION)"
	rm -rf $(DEB_OUT)
	mkdir -p $(DEB_TREE)
	tar -c $(DEB_EXCLUDES) -f - . | tar -x -C $(DEB_TREE) -f -
	cd $(DEB_TREE) && $(DEB_ENV) dpkg-buildpackage -us -uc -b
	test -f $(DEB_FILE)
	$(DEB_ENV) lintian --fail-on error --display-info $(DEB_FILE)
