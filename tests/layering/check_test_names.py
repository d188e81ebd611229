#!/usr/bin/env python3
"""check_test_names.py: every meson test() name follows the one style that
tests/meson.build describes at its top:

    <area> - <behaviour in words>

<area> is one of AREAS below (add a new part of the product here, in the
same change as its first test); <behaviour> is a sentence of at least three
words, not a function name. A name holds no ':' (meson turns it into '_',
so a '_' before a space or at the end is one), and no two tests share one.

The names are read from the configured build (meson-info/intro-tests.json),
so what is checked is what `meson test --list` shows. Prints each name that
breaks the rule and exits 1 if any does.

usage: check_test_names.py BUILD_ROOT
"""
import json
import os
import re
import sys

AREAS = {
	# the broker core's modules (tests/unit)
	'arena', 'base64', 'blob', 'cache', 'config', 'json', 'peer', 'protocol', 'loopcall', 'schedule', 'looptoken',
	# the daemon, its backends and its faces
	'core', 'daemon', 'pkcs11', 'azure', 'tokens', 'faults', 'security', 'kms', 'rotation',
	# the client library, the CLI and the scripts beside them
	'libkeybroker', 'cli', 'softhsm-token', 'bench',
	# the Python and Go clients (client/python, client/go)
	'python', 'go',
	# the emulator
	'emulator',
	# what ships: docs, man pages, usage, completion, terminal output, packages
	'docs', 'man', 'usage', 'completion', 'terminal', 'package',
	# the Debian packages the build, the tests and the docs need (scripts/packages)
	'deps',
	# the shape of the tree
	'layering',
}
NAME = re.compile(r'^(?P<area>[a-z0-9-]+) - (?P<behaviour>\S.*\S)$')


def problems(name):
	"""What is wrong with one name, as a list of reasons (empty if fine)."""
	out = []
	m = NAME.match(name)
	if not m:
		return ["is not '<area> - <behaviour in words>'"]
	if m['area'] not in AREAS:
		out.append(f"area '{m['area']}' is not one of check_test_names.py's AREAS")
	words = m['behaviour'].split()
	if len(words) < 3:
		out.append('the behaviour is not a sentence of three words or more')
	if sum('_' in w for w in words) * 2 > len(words):
		out.append('the behaviour reads as identifiers, not words')
	if re.search(r'_( |$)', name) or ':' in name:
		out.append("holds a ':' (meson writes it as '_')")
	return out


def main():
	with open(os.path.join(sys.argv[1], 'meson-info', 'intro-tests.json')) as f:
		tests = json.load(f)
	bad, seen = 0, {}
	for t in tests:
		seen[t['name']] = seen.get(t['name'], 0) + 1
	for name in sorted(seen):
		why = problems(name)
		if seen[name] > 1:
			why.append(f'is the name of {seen[name]} tests')
		for w in why:
			print(f'{name!r}: {w}')
		bad += bool(why)
	print(f'{len(tests)} tests, {bad} names break the rule')
	return 1 if bad else 0


if __name__ == '__main__':
	sys.exit(main())
