# `make mutation`: mutmut over sipxcc/sip, sipxcc/calls and sipxcc/web, judged by the unit
# tests only (config: [tool.mutmut] in pyproject.toml), then the score per package and every
# surviving mutant in bench/results/mutation-<date>.md (bench/mutation_report.py; survivors
# that cannot change behaviour are listed with their reason in tests/mutation-equivalent.txt).
# mutmut and its copy of the tree live in build/mutation/venv and mutants/, never .venv.
#
# Incremental: mutants/ keeps every verdict; mutmut re-tests only the mutants of functions
# that changed, each against the unit tests that cover it. When test files changed since
# the last run, the test-to-function map is collected again and the unkilled mutants those
# files' tests cover are re-tested, so a new test gets the credit (a changed helper such as
# sipfakes.py re-tests every unkilled mutant). `make mutation-clean` starts over.
# mutmut copies the tree's data files (openapi.json) only once; each run refreshes them,
# and forgets the mutants of a module that is gone from the tree.
# Nice 19 and MUTATION_JOBS workers (default 2). Not part of `make test`.

MUTATION_VENV := build/mutation/venv
MUTATION_STAMP := $(MUTATION_VENV)/.mutation-installed
MUTATION_JOBS ?= 2
MUTMUT := nice -n 19 $(CURDIR)/$(MUTATION_VENV)/bin/mutmut
MUTATION_PY := $(MUTATION_VENV)/bin/python

.PHONY: mutation mutation-report mutation-clean

$(MUTATION_STAMP): setup.cfg pyproject.toml
	test -x $(MUTATION_VENV)/bin/python || $(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/python -m pip install -q -e '.[mutation]'
	touch $@

# mutmut's progress spinner goes to mutants/mutmut-run.log; its last line is the tally.
mutation: $(MUTATION_STAMP)
	@start=$$(date +%s); \
	$(MUTATION_PY) bench/mutation_report.py --test-hashes-to build/mutation/tests-at-start.json; \
	changed=""; \
	if [ -d mutants ]; then changed=$$($(MUTATION_PY) bench/mutation_report.py --changed-tests); fi; \
	if [ -n "$$changed" ]; then \
	  echo "changed since the last run: $$changed"; \
	  rm -f mutants/mutmut-stats.json; \
	fi; \
	mkdir -p mutants; \
	(cd sipxcc && find . -type f ! -name '*.py' ! -path '*__pycache__*' \
	  -exec cp --parents -p {} ../mutants/sipxcc/ \; ) 2>/dev/null || true; \
	if [ -d mutants/sipxcc ]; then \
	  (cd mutants && find sipxcc -name '*.py' ! -path '*__pycache__*') | while read -r f; do \
	    [ -e "$$f" ] || { echo "gone from the tree: $$f"; rm -f "mutants/$$f" "mutants/$$f.meta" "mutants/$$f.spans"; }; \
	  done; \
	fi; \
	echo "$(MUTMUT) run --max-children $(MUTATION_JOBS) > mutants/mutmut-run.log"; \
	$(MUTMUT) run --max-children $(MUTATION_JOBS) > mutants/mutmut-run.log 2>&1 \
	  || { tr '\r' '\n' < mutants/mutmut-run.log | tail -40; exit 1; }; \
	tr '\r' '\n' < mutants/mutmut-run.log | grep -a '/' | tail -1; \
	if [ -n "$$changed" ]; then \
	  names=$$($(MUTATION_PY) bench/mutation_report.py --unkilled --covered-by $$changed); \
	  if [ -n "$$names" ]; then \
	    echo "re-testing $$(echo "$$names" | wc -l) unkilled mutants that the changed tests cover"; \
	    $(MUTMUT) run --max-children $(MUTATION_JOBS) $$names > mutants/mutmut-rerun.log 2>&1 \
	      || { tr '\r' '\n' < mutants/mutmut-rerun.log | tail -40; exit 1; }; \
	  fi; \
	fi; \
	$(MUTATION_PY) bench/mutation_report.py --save-test-hashes build/mutation/tests-at-start.json; \
	echo "mutmut: $$(( $$(date +%s) - start )) s"; \
	$(MAKE) --no-print-directory mutation-report

mutation-report:
	$(or $(wildcard $(MUTATION_PY)),$(PYTHON)) bench/mutation_report.py \
	  --out bench/results/mutation-$$(date -u +%Y%m%d-%H%M%S).md

mutation-clean:
	rm -rf mutants
