"""Rehearses the deploy offline: the translated template (the one CI lints) into moto's
CloudFormation on 127.0.0.1.

    python3 .ci/rehearse-deploy.py TRANSLATED.yaml SAM_TEMPLATE ENDPOINT [Name=Value ...]

- Lambda code is a placeholder package (a zip with a `bootstrap` that only says so) in moto's
  S3: building every function is too slow for CI and moto does not run them here.
- State machines get their real ASL (the SAM template's DefinitionUri) with the
  DefinitionSubstitutions applied by Fn::Sub, as CloudFormation applies them.
- Resource types moto's CloudFormation cannot create are left out, each with the check that
  stands in for it (STAND_INS); a reference to one becomes a placeholder value. A type that is
  neither supported nor listed fails the rehearsal.
- The stack must reach CREATE_COMPLETE and every resource of a supported type whose Condition
  holds must be CREATE_COMPLETE: a supported resource skipped fails the rehearsal.
Prints the stack's outputs as JSON on the last line.
"""
import io
import json
import logging
import pathlib
import sys
import zipfile

import boto3
import yaml
from moto.cloudformation.parsing import resource_class_from_type

# What stands in for each type moto's CloudFormation cannot create.
STAND_INS = {
    "AWS::StepFunctions::StateMachineVersion": "AWS publishes it; .ci/check-workflow-deploys.py checks each machine has one behind its alias",
    "AWS::StepFunctions::StateMachineAlias": ".ci/check-workflow-deploys.py (alarms by name, gradual type, everything starts the alias); cfn-lint on the translated template",
    "Custom::AgentSeed": "the seed handler on DynamoDB in moto (workers/agent-registry/tests/seed_moto.rs) and scripts/smoke-test.sh's registry check (crates/upsell-aws/tests/smoke_script.rs)",
    "AWS::SQS::QueuePolicy": "cfn-lint (policy schema, W3037 actions) and checkov on the translated template",
    "AWS::S3::BucketPolicy": "cfn-lint (policy schema, W3037 actions) and checkov (TLS-only statements) on the translated template",
    "AWS::SNS::Subscription": "cfn-lint; created only with AlarmEmail",
    "AWS::S3Vectors::VectorBucket": "cfn-lint resource schema; the Retrieve adapter is tested with canned Bedrock responses (crates/upsell-aws/tests/bedrock_canned.rs), the customer index adapter on moto's S3 Vectors and canned QueryVectors responses (crates/upsell-aws/tests/customer_index.rs)",
    "AWS::S3Vectors::Index": "cfn-lint resource schema (dimension, distance metric, non-filterable keys); crates/upsell-aws/tests/template_tables.rs checks the customer index against the code",
    "AWS::OpenSearchServerless::SecurityPolicy": "cfn-lint resource schema; only with KnowledgeBaseVectorStore=OPENSEARCH_SERVERLESS",
    "AWS::OpenSearchServerless::AccessPolicy": "cfn-lint resource schema; only with KnowledgeBaseVectorStore=OPENSEARCH_SERVERLESS",
    "AWS::OpenSearchServerless::Collection": "cfn-lint resource schema; only with KnowledgeBaseVectorStore=OPENSEARCH_SERVERLESS",
    "AWS::OpenSearchServerless::Index": "cfn-lint resource schema; only with KnowledgeBaseVectorStore=OPENSEARCH_SERVERLESS",
    "AWS::Bedrock::KnowledgeBase": "cfn-lint resource schema; the Retrieve adapter against canned Bedrock responses (crates/upsell-aws/tests/bedrock_canned.rs)",
    "AWS::Bedrock::DataSource": "cfn-lint resource schema; sam/deploy.sh --dry-run plans the ingestion jobs",
    "AWS::CloudWatch::Alarm": "cfn-lint on the translated template (metrics, math, thresholds); .ci/check-workflow-deploys.py (the deployment preferences name existing alarms)",
    "AWS::Scheduler::Schedule": "cfn-lint resource schema; .ci/check-workflow-deploys.py checks it targets an alias",
    "AWS::Lambda::Url": "cfn-lint resource schema",
    "AWS::SecretsManager::Secret": "cfn-lint and checkov on the translated template",
    "AWS::ApiGatewayV2::Api": "cfn-lint resource schema",
    "AWS::ApiGatewayV2::Stage": "cfn-lint resource schema",
    "AWS::ApiGatewayV2::Integration": "cfn-lint resource schema",
    "AWS::ApiGatewayV2::Route": "cfn-lint resource schema",
}

# Types moto accepts but cannot create honestly here: a custom resource runs its Lambda (a
# placeholder package in the rehearsal).
LEFT_OUT_ALWAYS = {"Custom::AgentSeed"}

REGION = "us-east-1"
CODE_BUCKET = "upsell-rehearsal-code"
CODE_KEY = "placeholder.zip"


# moto logs a warning per unsupported type; the rehearsal lists them itself.
logging.disable(logging.WARNING)


def supported(resource_type):
    if resource_type in LEFT_OUT_ALWAYS:
        return False
    return resource_class_from_type(resource_type) is not None


def condition_holds(name, conditions, parameters, seen=()):
    """Evaluates the template's conditions (Equals/Not/And/Or/Condition over parameters)."""
    if name in seen:
        raise ValueError(f"condition cycle at {name}")

    def ev(x):
        if isinstance(x, dict) and len(x) == 1:
            (k, v), = x.items()
            if k == "Fn::Equals":
                return val(v[0]) == val(v[1])
            if k == "Fn::Not":
                return not ev(v[0])
            if k == "Fn::And":
                return all(ev(i) for i in v)
            if k == "Fn::Or":
                return any(ev(i) for i in v)
            if k == "Condition":
                return condition_holds(v, conditions, parameters, seen + (name,))
        raise ValueError(f"condition {name}: cannot evaluate {x!r}")

    def val(x):
        if isinstance(x, dict) and "Ref" in x:
            return str(parameters[x["Ref"]])
        return str(x)

    return ev(conditions[name])


def placeholder(rid, resources):
    """The value a reference to a left-out resource gets: an alias is its machine's ARN
    qualified by the alias name (what CloudFormation returns); anything else an ARN-shaped
    placeholder."""
    r = resources[rid]
    if r["Type"] == "AWS::StepFunctions::StateMachineAlias":
        version = (r["Properties"].get("DeploymentPreference") or {}).get("StateMachineVersionArn") \
            or (r["Properties"].get("RoutingConfiguration") or [{}])[0].get("StateMachineVersionArn")
        machine = resources[version["Ref"]]["Properties"]["StateMachineArn"]
        return {"Fn::Join": [":", [machine, r["Properties"]["Name"]]]}
    return f"arn:aws:rehearsal:{REGION}:123456789012:placeholder/{rid}"


def replace_refs(node, removed, refs_only=False):
    """References to `removed` resources (id -> value) become those values: Ref, ${id} in Sub,
    and, unless `refs_only`, GetAtt and ${id.Attr} too."""
    again = lambda v: replace_refs(v, removed, refs_only)
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in removed:
            return removed[node["Ref"]]
        if set(node) == {"Fn::GetAtt"} and not refs_only:
            att = node["Fn::GetAtt"]
            target = att[0] if isinstance(att, list) else att.split(".", 1)[0]
            if target in removed:
                return f"rehearsal-placeholder-{target}"
        if "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
            variables = dict(again(variables))
            for r, value in removed.items():
                for form in [f"${{{r}}}"] + ([] if refs_only else [f"${{{r}.Arn}}"]):
                    if form in text:
                        name = f"Rehearsal{r}"
                        text = text.replace(form, f"${{{name}}}")
                        variables[name] = value
            return {"Fn::Sub": [text, variables] if variables else text}
        return {k: again(v) for k, v in node.items()}
    if isinstance(node, list):
        return [again(v) for v in node]
    return node


class CfnLoader(yaml.SafeLoader):
    """Reads short-form intrinsic tags (!Ref, ...) as plain values (only DefinitionUri is read)."""


CfnLoader.add_multi_constructor("!", lambda loader, _s, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def prepare(template, sam_path, parameters):
    resources = template["Resources"]
    conditions = template.get("Conditions") or {}
    sam = yaml.load(pathlib.Path(sam_path).read_text(), Loader=CfnLoader)
    base = pathlib.Path(sam_path).parent
    left_out, unknown = {}, []
    for rid, r in resources.items():
        t = r["Type"]
        if supported(t):
            continue
        if t in STAND_INS:
            left_out[rid] = t
        else:
            unknown.append(f"{rid} ({t})")
    if unknown:
        sys.exit("rehearsal: moto cannot create these and no stand-in check is listed "
                 f"(add one to STAND_INS): {', '.join(unknown)}")
    values = {rid: placeholder(rid, resources) for rid in left_out}
    for rid in left_out:
        del resources[rid]
    template = replace_refs(template, values)
    resources = template["Resources"]
    for r in resources.values():
        deps = r.get("DependsOn")
        if isinstance(deps, str) and deps in left_out:
            del r["DependsOn"]
        elif isinstance(deps, list):
            r["DependsOn"] = [d for d in deps if d not in left_out]
    for rid, r in resources.items():
        p = r.setdefault("Properties", {})
        if r["Type"] == "AWS::Lambda::Function":
            p["Code"] = {"S3Bucket": CODE_BUCKET, "S3Key": CODE_KEY}
        if r["Type"] == "AWS::StepFunctions::StateMachine" and "DefinitionS3Location" in p:
            uri = sam["Resources"][rid]["Properties"]["DefinitionUri"]
            definition = (base / uri).read_text()
            subs = p.pop("DefinitionSubstitutions", {})
            del p["DefinitionS3Location"]
            p["DefinitionString"] = {"Fn::Sub": [definition, subs]} if subs else definition
    # moto resolves Ref of an event bus to its model object, not its name: every Ref of a bus
    # (rules, outputs) gets the bus's own Name property instead, the value CloudFormation gives.
    buses = {rid: r["Properties"]["Name"] for rid, r in resources.items()
             if r["Type"] == "AWS::Events::EventBus"}
    template = replace_refs(template, buses, refs_only=True)
    resources = template["Resources"]
    expected = {}
    for rid, r in resources.items():
        cond = r.get("Condition")
        if cond is None or condition_holds(cond, conditions, parameters):
            expected[rid] = r["Type"]
    return template, left_out, expected


def check_wiring(session, endpoint, created, expected):
    """What the created stack must look like inside: every state machine's definition is
    complete JSON (no `${...}` left: each placeholder has its substitution), and every rule
    targets a state machine's `live` alias."""
    sfn = session.client("stepfunctions", endpoint_url=endpoint)
    events = session.client("events", endpoint_url=endpoint)
    problems = []
    for rid, t in expected.items():
        physical = created[rid].get("PhysicalResourceId", "")
        if t == "AWS::StepFunctions::StateMachine":
            definition = sfn.describe_state_machine(stateMachineArn=physical)["definition"]
            if "${" in definition:
                problems.append(f"{rid}: definition keeps a placeholder without substitution")
            if " object at 0x" in definition:
                problems.append(f"{rid}: a substitution resolved to a moto object, not a value")
            json.loads(definition)
        if t == "AWS::Events::Rule":
            bus = next((b["Name"] for b in events.list_event_buses()["EventBuses"]
                        if any(r["Name"] == physical for r in
                               events.list_rules(EventBusName=b["Name"])["Rules"])), None)
            if bus is None:
                problems.append(f"{rid}: rule {physical} is on no bus")
                continue
            for target in events.list_targets_by_rule(Rule=physical, EventBusName=bus)["Targets"]:
                if ":stateMachine:" in target["Arn"] and not target["Arn"].endswith(":live"):
                    problems.append(f"{rid}: targets {target['Arn']}, not a live alias")
    print(f"  wiring: {sum(t == 'AWS::StepFunctions::StateMachine' for t in expected.values())} "
          f"definitions complete, rule targets are live aliases")
    return problems


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    translated, sam_path, endpoint = argv[1:4]
    overrides = dict(a.split("=", 1) for a in argv[4:])
    template = yaml.safe_load(pathlib.Path(translated).read_text())
    parameters = {k: str(v.get("Default", "")) for k, v in (template.get("Parameters") or {}).items()}
    parameters.update(overrides)
    template, left_out, expected = prepare(template, sam_path, parameters)

    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                    region_name=REGION)
    s3 = session.client("s3", endpoint_url=endpoint)
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    s3.create_bucket(Bucket=CODE_BUCKET)
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\necho 'placeholder package of the offline rehearsal' >&2\nexit 1\n")
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=package.getvalue())

    stack = f"upsell-flow-{parameters.get('Stage', 'dev')}"
    try:
        cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template),
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()],
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    except Exception as e:  # moto answers some template errors with a 500 page
        sys.exit(f"rehearsal: CreateStack of {stack} failed: {e}")
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    status = described["StackStatus"]
    created = {r["LogicalResourceId"]: r for r in
               cfn.describe_stack_resources(StackName=stack)["StackResources"]}
    problems = []
    if status != "CREATE_COMPLETE":
        problems.append(f"stack {stack} is {status}: {described.get('StackStatusReason')}")
    by_type = {}
    for rid, t in sorted(expected.items()):
        r = created.get(rid)
        state = r["ResourceStatus"] if r else "SKIPPED"
        by_type.setdefault(t, []).append(state)
        if state != "CREATE_COMPLETE":
            problems.append(f"{rid} ({t}) is {state}")
    print(f"rehearsal: stack {stack} on {endpoint}: {status}")
    for t, states in sorted(by_type.items()):
        ok = sum(s == "CREATE_COMPLETE" for s in states)
        print(f"  created  {t}: {ok}/{len(states)} CREATE_COMPLETE")
    for t in sorted(set(left_out.values())):
        n = sum(v == t for v in left_out.values())
        print(f"  stand-in {t} ({n}): {STAND_INS[t]}")
    if status == "CREATE_COMPLETE":
        problems += check_wiring(session, endpoint, created, expected)
    for p in problems:
        print(f"rehearsal: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    outputs = {o["OutputKey"]: o.get("OutputValue") for o in described.get("Outputs", [])}
    print(json.dumps(outputs, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv)
