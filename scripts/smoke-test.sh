#!/usr/bin/env bash
# Smoke test of a deployed stack, run by the pipeline after each deploy: the registry holds the
# seeded agents (the SeedAgents custom resource registers them on deploy), then one
# ServiceCompleted event put on the stack's bus gets its terminal record in the messages table.
#
#   scripts/smoke-test.sh --stack NAME [--profile P] [--region R] [--endpoint-url URL]
#                         [--timeout SECONDS] [--customer ID] [--expect approved,rejected,skipped]
#
# The event's id is the one EventBridge assigns (the workflow keys its record by it). The record
# must arrive within --timeout (default 300 s) with a status in --expect: a `failed` record, or
# none, fails the smoke test. A customer without features is `skipped`: that still proves the
# bus, the rule, the alias, the workflow and the table. Needs the AWS CLI and jq;
# --endpoint-url points every call at an emulator (moto server in the tests).
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "smoke-test.sh: $*" >&2; exit 1; }

stack='' timeout=300 customer=cust-000006 expect=approved,rejected,skipped aws=(aws)
while [ $# -gt 0 ]; do
    case "$1" in
        --stack) stack=${2:-}; shift 2 ;;
        --profile) aws+=(--profile "${2:-}"); shift 2 ;;
        --region) aws+=(--region "${2:-}"); shift 2 ;;
        --endpoint-url) aws+=(--endpoint-url "${2:-}"); shift 2 ;;
        --timeout) timeout=${2:-}; shift 2 ;;
        --customer) customer=${2:-}; shift 2 ;;
        --expect) expect=${2:-}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "smoke-test.sh: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$stack" ] || { echo "smoke-test.sh: --stack is required" >&2; usage; }
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, not '$timeout'"
command -v jq >/dev/null || die "jq is required"

output() {
    local v
    v=$("${aws[@]}" cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text)
    [ -n "$v" ] && [ "$v" != None ] || die "stack $stack has no $1 output"
    echo "$v"
}
bus=$(output EventBusName)
messages=$(output MessagesTableName)
registry=$(output AgentRegistryTableName)

# 1. The registry was seeded: each seed agent has a ROUTING item with a production version.
for agent in upsell-generator upsell-judge; do
    key=$(jq -cn --arg pk "AGENT#$agent" '{pk: {S: $pk}, sk: {S: "ROUTING"}}')
    version=$("${aws[@]}" dynamodb get-item --table-name "$registry" --key "$key" \
        --consistent-read --output json | jq -r '.Item.productionVersion.S // empty')
    [ -n "$version" ] || die "registry $registry has no production version of $agent (was SeedAgents run?)"
    echo "smoke-test.sh: registry: $agent production version $version"
done

# 2. One event through the bus, the rule and the workflow.
detail=$(jq -cn --arg c "$customer" --arg d "$(date -u +%F)" \
    '{customerId: $c, service: "duct-cleaning", serviceDate: $d, priceCents: 100,
      technicianNotes: "Pipeline smoke test.", rating: 5}')
entries=$(jq -cn --arg bus "$bus" --arg detail "$detail" \
    '[{Source: "com.greenleaf.field-service", DetailType: "ServiceCompleted",
       Detail: $detail, EventBusName: $bus}]')
put=$("${aws[@]}" events put-events --entries "$entries" --output json)
[ "$(jq -r '.FailedEntryCount' <<<"$put")" = 0 ] || die "PutEvents failed: $put"
event_id=$(jq -r '.Entries[0].EventId' <<<"$put")
echo "smoke-test.sh: put event $event_id on $bus"

key=$(jq -cn --arg pk "EVENT#$event_id" '{pk: {S: $pk}, sk: {S: "RECORD"}}')
deadline=$(( $(date +%s) + timeout ))
while :; do
    status=$("${aws[@]}" dynamodb get-item --table-name "$messages" --key "$key" \
        --consistent-read --output json | jq -r '.Item.status.S // empty')
    [ -n "$status" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "no record for event $event_id in $messages after ${timeout}s"
    sleep 5
done
case ",$expect," in
    *",$status,"*) echo "smoke-test.sh: event $event_id ended $status: the stack $stack works" ;;
    *) die "event $event_id ended $status, expected one of $expect" ;;
esac
