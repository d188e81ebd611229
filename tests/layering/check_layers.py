#!/usr/bin/env python3
"""check_layers.py: the shape of the product, read from the built objects.

Every product source file (not tests/) is one node; file A points at file B
when A's object leaves a symbol undefined (nm 'U') that B's object defines.
Two files that reach each other through these arrows form a cycle (a
strongly connected component of more than one file). The check fails when

  - there is a cycle not named in known_cycles.txt (the list of cycles
    another change is taking apart; it may only shrink), or
  - keybrokerd holds a symbol defined by client/ (the daemon must not link
    client code), or
  - libkeybroker holds a symbol defined by bench/ (the benchmark engine is
    linked into the CLI, never into the library users install).

It prints the cycle count either way. Which object belongs to which source
comes from the build's compile_commands.json, so no file name is guessed.

usage: check_layers.py BUILD_ROOT SOURCE_ROOT KEYBROKERD LIBKEYBROKER
"""
import json
import os
import subprocess
import sys

PRODUCT = ('broker/', 'pkcs11/', 'hsm/', 'common/', 'client/', 'emulator/', 'bench/')


def nm(path, local=False):
	"""(defined, undefined) global symbol sets of one object or binary; with
	local, the defined set also holds local ones (a shared library's hidden
	symbols are local once it is linked)."""
	out = subprocess.run(['nm', '-P', path], check=True, capture_output=True, text=True).stdout
	defined, undefined = set(), set()
	for line in out.splitlines():
		parts = line.split()
		if len(parts) < 2:
			continue
		name, kind = parts[0], parts[1]
		if kind == 'U':
			undefined.add(name)
		elif kind in 'TDBRCGSVW' or (local and kind in 'tdbrgsv'):
			defined.add(name)
	return defined, undefined


def product_objects(build, source):
	"""{source path relative to the tree: object path}, one object each."""
	with open(os.path.join(build, 'compile_commands.json')) as f:
		entries = json.load(f)
	objs = {}
	for e in entries:
		src = os.path.relpath(os.path.normpath(os.path.join(e['directory'], e['file'])), source)
		if not src.startswith(PRODUCT):
			continue
		objs.setdefault(src, os.path.join(e['directory'], e['output']))
	return objs


def edges(objs):
	"""{file: {file it calls: [symbols]}}. A symbol defined in several
	files (main, or a name two programs each have) resolves to the one in
	the caller's own folder; if that is not one file, it is not counted."""
	defs, undef = {}, {}
	for src, obj in objs.items():
		d, u = nm(obj)
		undef[src] = u
		for s in d:
			defs.setdefault(s, set()).add(src)
	out = {src: {} for src in objs}
	for src, u in undef.items():
		folder = src.split('/')[0]
		for s in u:
			where = defs.get(s)
			if not where:
				continue
			if len(where) > 1:
				where = {w for w in where if w.split('/')[0] == folder}
			if len(where) != 1:
				continue
			dst = next(iter(where))
			if dst != src:
				out[src].setdefault(dst, []).append(s)
	return out


def cycles(graph):
	"""Strongly connected components of more than one node (Tarjan)."""
	index, low, on, stack, found = {}, {}, set(), [], []
	counter = [0]

	def visit(v):
		index[v] = low[v] = counter[0]
		counter[0] += 1
		stack.append(v)
		on.add(v)
		for w in graph[v]:
			if w not in index:
				visit(w)
				low[v] = min(low[v], low[w])
			elif w in on:
				low[v] = min(low[v], index[w])
		if low[v] == index[v]:
			comp = []
			while True:
				w = stack.pop()
				on.discard(w)
				comp.append(w)
				if w == v:
					break
			if len(comp) > 1:
				found.append(sorted(comp))

	sys.setrecursionlimit(10000)
	for v in sorted(graph):
		if v not in index:
			visit(v)
	return sorted(found)


def known(path):
	"""Accepted cycles: one a line, its files separated by spaces."""
	out = []
	with open(path) as f:
		for line in f:
			line = line.split('#', 1)[0].strip()
			if line:
				out.append(sorted(line.split()))
	return out


def main():
	build, source, daemon, library = sys.argv[1:5]
	objs = product_objects(build, source)
	if not objs:
		print('no product objects found in compile_commands.json', file=sys.stderr)
		return 2
	graph = edges(objs)
	found = cycles(graph)
	accepted = known(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'known_cycles.txt'))
	bad = 0
	print(f'{len(objs)} product files, {sum(len(v) for v in graph.values())} arrows, {len(found)} cycles')
	for comp in found:
		mark = 'known' if comp in accepted else 'NEW'
		if comp not in accepted:
			bad += 1
		print(f'cycle ({mark}): ' + ' '.join(comp))
		members = set(comp)
		for a in comp:
			for b, syms in sorted(graph[a].items()):
				if b in members:
					print(f'  {a} -> {b}: {", ".join(sorted(syms)[:6])}')
	for comp in accepted:
		if comp not in found:
			print('gone (drop it from known_cycles.txt): ' + ' '.join(comp))

	bad += holds(daemon, 'keybrokerd', 'client/', objs)
	bad += holds(library, 'libkeybroker', 'bench/', objs, local=True)
	return 1 if bad else 0


def holds(binary, name, folder, objs, local=False):
	"""Prints the symbols of folder that binary holds: the names folder
	defines and nothing else does (main is everyone's). 1 if any, else 0."""
	folder_defs, other_defs = {}, set()
	for src, obj in objs.items():
		for s in nm(obj)[0]:
			if src.startswith(folder):
				folder_defs[s] = src
			else:
				other_defs.add(s)
	folder_defs = {s: src for s, src in folder_defs.items() if s not in other_defs}
	defs, _ = nm(binary, local)
	linked = sorted(f'{s} ({folder_defs[s]})' for s in defs if s in folder_defs)
	print(f'{name} holds {len(linked)} symbols of {folder}')
	for s in linked:
		print('  ' + s)
	return 1 if linked else 0


if __name__ == '__main__':
	sys.exit(main())
