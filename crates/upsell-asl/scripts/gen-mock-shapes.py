#!/usr/bin/env python3
"""Generates src/mock_shapes.json: the response shapes of the AWS API operations that TestState
mock results are validated against (fieldValidationMode), taken from botocore's service models.

Usage: /work/venv/bin/python crates/upsell-asl/scripts/gen-mock-shapes.py
Only the operations listed in OPERATIONS are kept, with the shapes their outputs reach; member
names are capitalised as Step Functions returns them."""
import gzip, json, os, sys
import botocore

DATA = os.path.join(os.path.dirname(botocore.__file__), "data")
# (service name in botocore, operation)
OPERATIONS = [
    ("lambda", "Invoke"), ("lambda", "GetFunction"),
    ("events", "PutEvents"),
    ("stepfunctions", "StartExecution"), ("stepfunctions", "StartSyncExecution"),
    ("stepfunctions", "DescribeExecution"),
    ("dynamodb", "PutItem"), ("dynamodb", "GetItem"), ("dynamodb", "UpdateItem"),
    ("dynamodb", "DeleteItem"), ("dynamodb", "Query"),
    ("sqs", "SendMessage"), ("sns", "Publish"),
    ("kms", "Encrypt"), ("kms", "Decrypt"),
    ("s3", "GetObject"), ("s3", "PutObject"),
    ("secretsmanager", "GetSecretValue"),
]
KEEP = ("type", "min", "max", "required")

def load(service):
    d = os.path.join(DATA, service)
    version = sorted(os.listdir(d))[-1]
    with gzip.open(os.path.join(d, version, "service-2.json.gz")) as f:
        return json.load(f)

def main():
    out = {"operations": {}, "shapes": {}}
    for service, op in OPERATIONS:
        model = load(service)
        shapes = model["shapes"]
        output = model["operations"][op].get("output", {}).get("shape")
        if not output:
            continue
        out["operations"][f"{service}:{op}"] = f"{service}.{output}"
        todo = [output]
        while todo:
            name = todo.pop()
            key = f"{service}.{name}"
            if key in out["shapes"]:
                continue
            s = shapes[name]
            t = {k: s[k] for k in KEEP if k in s}
            if s["type"] == "structure":
                t["members"] = {}
                for m, spec in s.get("members", {}).items():
                    t["members"][m[:1].upper() + m[1:]] = f"{service}.{spec['shape']}"
                    todo.append(spec["shape"])
                t["required"] = [r[:1].upper() + r[1:] for r in s.get("required", [])]
            elif s["type"] == "list":
                t["member"] = f"{service}.{s['member']['shape']}"
                todo.append(s["member"]["shape"])
            elif s["type"] == "map":
                t["value"] = f"{service}.{s['value']['shape']}"
                todo.append(s["value"]["shape"])
            out["shapes"][key] = t
    path = os.path.join(os.path.dirname(__file__), "..", "src", "mock_shapes.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(f"{path}: {len(out['operations'])} operations, {len(out['shapes'])} shapes")

if __name__ == "__main__":
    main()
