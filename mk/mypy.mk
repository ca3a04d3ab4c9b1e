# mypy --strict (config in pyproject.toml [tool.mypy], with the mypy-zope plugin) over all
# of sipxcc and the twistd plugin. Only in the venv: Debian's python3 has no mypy-zope.
MYPY_PATHS := sipxcc twisted/plugins/sipxcc_plugin.py

.PHONY: mypy
mypy: venv
	$(VENV)/bin/mypy $(MYPY_PATHS)
