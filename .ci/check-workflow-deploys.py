"""Checks the safe-deploy wiring of the state machines in a translated CloudFormation template.

    python3 .ci/check-workflow-deploys.py TRANSLATED.yaml
    python3 .ci/check-workflow-deploys.py --self-test

The traps it guards against (docs/deployment.md, "Workflow deployments and rollback"):
- every state machine publishes a version behind an alias with a gradual DeploymentPreference
  (CANARY or LINEAR; ALL_AT_ONCE or none would never roll back by itself);
- DeploymentPreference.Alarms lists alarm NAMES: each entry must be `Ref` of an
  AWS::CloudWatch::Alarm of this template. An ARN, or a name no alarm has, counts as OK to
  Step Functions, so that deployment could never roll back;
- whatever starts executions (EventBridge rule targets, EventBridge Scheduler targets, another
  machine's DefinitionSubstitutions) starts the alias, not the unqualified state machine.
"""
import sys

import yaml

MACHINE = "AWS::StepFunctions::StateMachine"
VERSION = "AWS::StepFunctions::StateMachineVersion"
ALIAS = "AWS::StepFunctions::StateMachineAlias"
ALARM = "AWS::CloudWatch::Alarm"
GRADUAL = {"CANARY", "LINEAR"}


def ref(value):
    """The logical id a `{"Ref": id}` names, else None."""
    if isinstance(value, dict) and set(value) == {"Ref"} and isinstance(value["Ref"], str):
        return value["Ref"]
    return None


def mentions_arn(value):
    """Whether a value is or builds an ARN (a literal `arn:`, GetAtt ...Arn, Sub/Join with arn:)."""
    if isinstance(value, str):
        return value.startswith("arn:") or ":cloudwatch:" in value
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            name = att[1] if isinstance(att, list) and len(att) > 1 else str(att).split(".", 1)[-1]
            return "Arn" in str(name)
        return any(mentions_arn(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_arn(v) for v in value)
    return False


def check(template):
    """Returns a list of problems (empty when the template is fine)."""
    resources = template.get("Resources") or {}
    parameters = template.get("Parameters") or {}
    problems = []
    of_type = lambda t: {k: v for k, v in resources.items() if v.get("Type") == t}
    machines, versions, aliases = of_type(MACHINE), of_type(VERSION), of_type(ALIAS)
    alarms = of_type(ALARM)
    props = lambda r: r.get("Properties") or {}

    version_of = {}  # version id -> machine id
    for vid, v in versions.items():
        m = ref(props(v).get("StateMachineArn"))
        if m in machines:
            version_of[vid] = m

    aliased = set()
    alias_ids = {}  # machine id -> alias ids
    for aid, a in aliases.items():
        p = props(a)
        pref = p.get("DeploymentPreference")
        if not pref:
            problems.append(f"{aid}: alias without DeploymentPreference (routing by hand never rolls back)")
            continue
        vid = ref(pref.get("StateMachineVersionArn"))
        machine = version_of.get(vid)
        if machine is None:
            problems.append(f"{aid}: DeploymentPreference.StateMachineVersionArn is not Ref of a published version of a state machine here")
            continue
        aliased.add(machine)
        alias_ids.setdefault(machine, set()).add(aid)
        kind = pref.get("Type")
        kinds = {kind} if isinstance(kind, str) else None
        if ref(kind) in parameters:
            kinds = set(parameters[ref(kind)].get("AllowedValues") or [])
            if not kinds:
                problems.append(f"{aid}: DeploymentPreference.Type is parameter {ref(kind)} without AllowedValues")
                kinds = None
        if kinds is None or not kinds <= GRADUAL:
            problems.append(f"{aid}: DeploymentPreference.Type must be CANARY or LINEAR, not {kind!r}")
        entries = pref.get("Alarms") or []
        if not entries:
            problems.append(f"{aid}: DeploymentPreference watches no alarms, so it never rolls back")
        for i, entry in enumerate(entries):
            name = ref(entry)
            if mentions_arn(entry):
                problems.append(f"{aid}: Alarms[{i}] is an ARN ({entry!r}); Step Functions wants alarm names and treats an unknown one as OK")
            elif name is None:
                problems.append(f"{aid}: Alarms[{i}] ({entry!r}) is not Ref of an alarm of this template; a name no alarm has counts as OK")
            elif name not in alarms:
                problems.append(f"{aid}: Alarms[{i}] is Ref {name}, which is not an {ALARM} of this template")

    for mid in machines:
        if mid not in aliased:
            problems.append(f"{mid}: state machine without a published version behind an alias with a DeploymentPreference (AutoPublishAlias + DeploymentPreference)")

    # Whatever starts executions must start the alias.
    def starts(where, value):
        target = ref(value)
        if target in machines:
            problems.append(f"{where}: starts {target} unqualified; target its alias ({', '.join(sorted(alias_ids.get(target, ['<none>'])))}) so deployments and rollbacks apply")

    for rid, r in resources.items():
        p = props(r)
        if r.get("Type") == "AWS::Events::Rule":
            for i, t in enumerate(p.get("Targets") or []):
                starts(f"{rid}.Targets[{i}]", t.get("Arn"))
        elif r.get("Type") == "AWS::Scheduler::Schedule":
            starts(f"{rid}.Target", (p.get("Target") or {}).get("Arn"))
        elif r.get("Type") == "AWS::Pipes::Pipe":
            starts(f"{rid}.Target", p.get("Target"))
        elif r.get("Type") == MACHINE:
            for name, value in (p.get("DefinitionSubstitutions") or {}).items():
                if ref(value) != rid:
                    starts(f"{rid}.DefinitionSubstitutions.{name}", value)
    return problems


def self_test():
    """The checks must fail on each trap; a wired template must pass."""
    def template(alarms=None, kind="CANARY", target="SMAliaslive", alias=True, subs=None):
        res = {
            "Alarm": {"Type": ALARM, "Properties": {}},
            "SM": {"Type": MACHINE, "Properties": {"DefinitionSubstitutions": subs or {}}},
            "SMVersion": {"Type": VERSION, "Properties": {"StateMachineArn": {"Ref": "SM"}}},
            "Rule": {"Type": "AWS::Events::Rule", "Properties": {"Targets": [{"Arn": {"Ref": target}}]}},
        }
        if alias:
            res["SMAliaslive"] = {"Type": ALIAS, "Properties": {"DeploymentPreference": {
                "Type": kind, "StateMachineVersionArn": {"Ref": "SMVersion"},
                "Alarms": [{"Ref": "Alarm"}] if alarms is None else alarms}}}
        return {"Resources": res}

    cases = {
        "wired": (template(), 0),
        "alarm ARN": (template(alarms=[{"Fn::GetAtt": ["Alarm", "Arn"]}]), 1),
        "alarm ARN literal": (template(alarms=["arn:aws:cloudwatch:us-east-1:1:alarm:x"]), 1),
        "alarm name literal": (template(alarms=["some-alarm"]), 1),
        "alarm not in template": (template(alarms=[{"Ref": "Missing"}]), 1),
        "no alarms": (template(alarms=[]), 1),
        "all at once": (template(kind="ALL_AT_ONCE"), 1),
        "no alias": (template(alias=False, target="Alarm"), 1),
        "rule targets the machine": (template(target="SM"), 1),
        "substitution names something else": (template(subs={"Child": {"Ref": "SM2"}}), 0),
    }
    # A second machine whose definition starts the first unqualified.
    bad_sub = template()
    bad_sub["Resources"]["Parent"] = {"Type": MACHINE, "Properties": {"DefinitionSubstitutions": {"Child": {"Ref": "SM"}}}}
    bad_sub["Resources"]["ParentVersion"] = {"Type": VERSION, "Properties": {"StateMachineArn": {"Ref": "Parent"}}}
    bad_sub["Resources"]["ParentAlias"] = {"Type": ALIAS, "Properties": {"DeploymentPreference": {
        "Type": "LINEAR", "StateMachineVersionArn": {"Ref": "ParentVersion"}, "Alarms": [{"Ref": "Alarm"}]}}}
    cases["another machine starts it unqualified"] = (bad_sub, 1)
    failed = False
    for name, (tmpl, want) in cases.items():
        got = check(tmpl)
        if (len(got) > 0) != (want > 0):
            print(f"self-test {name!r}: expected {'problems' if want else 'none'}, got {got}")
            failed = True
    if failed:
        sys.exit(1)
    print(f"check-workflow-deploys self-test: {len(cases)} cases ok")


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        template = yaml.safe_load(f)
    problems = check(template)
    for p in problems:
        print(f"workflow deploys: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    n = sum(1 for r in (template.get("Resources") or {}).values() if r.get("Type") == MACHINE)
    print(f"workflow deploys: {n} state machines publish versions behind alarm-watched gradual aliases")


if __name__ == "__main__":
    main(sys.argv)
