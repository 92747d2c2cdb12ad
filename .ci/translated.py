"""Extracts the translated CloudFormation template from `sam validate --debug` output (stdin)."""
import re
import sys

stamp = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} \| ")
lines, inside = [], False
for line in sys.stdin:
    if inside:
        # The debug log resumes (timestamped) or sam prints its verdict on stdout.
        if stamp.match(line) or " is a valid SAM Template" in line:
            break
        lines.append(line)
    elif line.rstrip().endswith("Translated template is:"):
        inside = True
if not lines:
    sys.exit("no translated template in the sam validate --debug output")
sys.stdout.write("".join(lines))
