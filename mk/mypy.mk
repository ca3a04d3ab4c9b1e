# mypy --strict (config in pyproject.toml [tool.mypy]) over the modules typed so far: the
# leaves, the timer queues, the transition tables and the SIP layer without
# transport.py (imports of those are followed, not reported).
MYPY_STRICT := sipxcc/statemachine.py sipxcc/timers.py sipxcc/hosts.py sipxcc/config.py \
	sipxcc/users.py sipxcc/tls.py sipxcc/logs.py sipxcc/sip/__init__.py \
	sipxcc/sip/grammar.py sipxcc/sip/uri.py sipxcc/sip/headers.py sipxcc/sip/message.py \
	sipxcc/sip/framing.py sipxcc/sip/digest.py sipxcc/sip/limits.py sipxcc/sip/transaction.py \
	sipxcc/sip/dialog.py sipxcc/sip/outgoing.py sipxcc/sip/useragent.py sipxcc/sip/stats.py

.PHONY: mypy
mypy: venv
	$(VENV)/bin/mypy --follow-imports=silent $(MYPY_STRICT)
