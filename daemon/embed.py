#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Turns a text file into a C header holding it as one string constant, so
# that shoald serves its dashboard without files to install or find.
# Usage: embed.py INPUT OUTPUT NAME
import sys

src, dst, name = sys.argv[1:4]
data = open(src, 'rb').read()
with open(dst, 'w') as out:
    out.write('/* generated from %s by daemon/embed.py: do not edit */\n#pragma once\n' % src.split('/')[-1])
    out.write('static const char %s[] =\n' % name)
    for i in range(0, len(data), 64):
        chunk = data[i:i + 64]
        out.write('\t"' + ''.join('\\x%02x' % b for b in chunk) + '"\n')
    out.write(';\n')
