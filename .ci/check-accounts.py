"""Checks sam/accounts/*.json against the templates they parameterise and against accounts.env.

    python3 .ci/check-accounts.py [sam/accounts]

- every parameter file names only the template's parameters, gives every parameter without a
  Default, and each value fits AllowedPattern / AllowedValues;
- tooling.json's workload account ids are accounts.env's, and each <stage>.json's
  PipelineRoleName is the stage's OIDC role of tooling.yaml (upsell-flow-pipeline-<stage>).
"""
import json
import pathlib
import re
import sys

import yaml


class CfnLoader(yaml.SafeLoader):
    """Reads short-form intrinsic tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


CfnLoader.add_multi_constructor("!", _tag)

TEMPLATE_OF = {"dev": "account-roles.yaml", "test": "account-roles.yaml", "prod": "account-roles.yaml",
               "tooling": "tooling.yaml", "organization": "organization.yaml"}


def check(folder):
    problems = []
    env = {}
    for line in (folder / "accounts.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    given = {}
    for name, template in TEMPLATE_OF.items():
        params_file = folder / f"{name}.json"
        if not params_file.exists():
            problems.append(f"{params_file}: missing (parameters of {template})")
            continue
        declared = yaml.load((folder / template).read_text(), Loader=CfnLoader).get("Parameters") or {}
        values = {p["ParameterKey"]: p["ParameterValue"] for p in json.loads(params_file.read_text())}
        given[name] = values
        for key, value in values.items():
            spec = declared.get(key)
            if spec is None:
                problems.append(f"{params_file}: {key} is not a parameter of {template}")
                continue
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, value):
                problems.append(f"{params_file}: {key}={value!r} does not match {pattern}")
            allowed = spec.get("AllowedValues")
            if allowed and value not in [str(a) for a in allowed]:
                problems.append(f"{params_file}: {key}={value!r} is not one of {allowed}")
        for key, spec in declared.items():
            if "Default" not in spec and key not in values:
                problems.append(f"{params_file}: {key} (no Default in {template}) is not given")
    tooling = given.get("tooling", {})
    tooling_id = env.get("UPSELL_ACCOUNT_ID_TOOLING")
    for stage in ("dev", "test", "prod"):
        env_id = env.get(f"UPSELL_ACCOUNT_ID_{stage.upper()}")
        if tooling.get(f"{stage.capitalize()}AccountId") != env_id:
            problems.append(f"tooling.json: {stage.capitalize()}AccountId is not accounts.env's {env_id}")
        values = given.get(stage, {})
        if values.get("Stage") != stage:
            problems.append(f"{stage}.json: Stage is {values.get('Stage')!r}")
        if values.get("ToolingAccountId") != tooling_id:
            problems.append(f"{stage}.json: ToolingAccountId is not accounts.env's UPSELL_ACCOUNT_ID_TOOLING ({tooling_id})")
        if values.get("PipelineRoleName") != f"upsell-flow-pipeline-{stage}":
            problems.append(f"{stage}.json: PipelineRoleName must be upsell-flow-pipeline-{stage} (tooling.yaml)")
    return problems


def main(argv):
    folder = pathlib.Path(argv[1] if len(argv) > 1 else "sam/accounts")
    problems = check(folder)
    for p in problems:
        print(f"accounts: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"accounts: {len(TEMPLATE_OF)} parameter files fit their templates and accounts.env")


if __name__ == "__main__":
    main(sys.argv)
