#!/usr/bin/env bash
# Runs failed events again in AWS, the way `upsell redrive` does locally (same workflow, same
# steps): for each `failed` record in the messages table, the claim (EVENT#<id>/CLAIM) is handed
# from the failed execution to a new one named <failed name>-redrive-<n> (a conditional update:
# only while the failed execution holds it), and that execution starts with the failed one's
# input. Its ClaimEvent accepts the claim (executionId = :me) and its terminal record replaces
# the failed one. The failed execution and its history stay.
#
# Step Functions' own RedriveExecution would restart the failed execution at WorkflowFailed (the
# workflow catches failures into RecordFailure), so it cannot re-run a failed event.
#
#   scripts/redrive.sh --stack NAME [--since 2026-01-31T00:00:00Z] [--error NAME] [--profile P]
#                      [--dry-run]
#
# Needs the AWS CLI v2 and jq. --dry-run lists the events and prints the writes it would make.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "redrive.sh: $*" >&2; exit 1; }

stack='' since='' error='' dry_run=0 aws=(aws)
while [ $# -gt 0 ]; do
    case "$1" in
        --stack) stack=${2:-}; shift 2 ;;
        --since) since=${2:-}; shift 2 ;;
        --error) error=${2:-}; shift 2 ;;
        --profile) aws+=(--profile "${2:-}"); shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "redrive.sh: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$stack" ] || { echo "redrive.sh: --stack is required" >&2; usage; }
command -v jq >/dev/null || die "jq is required"

output() {
    "${aws[@]}" cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
table=$(output MessagesTableName)
machine=$(output StateMachineArn)
[ -n "$table" ] && [ -n "$machine" ] || die "stack $stack has no MessagesTableName/StateMachineArn outputs"

filter='sk = :record AND #status = :failed'
values='{":record":{"S":"RECORD"},":failed":{"S":"failed"}}'
if [ -n "$since" ]; then
    filter="$filter AND createdAt >= :since"
    values=$(jq -c --arg t "$since" '. + {":since":{"S":$t}}' <<<"$values")
fi
# Failed records: event id and error name ("<Error>: <cause>" in the record's error).
"${aws[@]}" dynamodb scan --table-name "$table" --filter-expression "$filter" \
    --expression-attribute-values "$values" --projection-expression 'eventId, #r' \
    --expression-attribute-names '{"#status":"status","#r":"record"}' \
    --output json \
  | jq -r --arg e "$error" '.Items[]
      | {id: .eventId.S, err: ((.record.S | fromjson | .error // "") | split(": ")[0])}
      | select($e == "" or .err == $e) | .id' \
  | while read -r event_id; do
    key=$(jq -cn --arg pk "EVENT#$event_id" '{pk:{S:$pk},sk:{S:"CLAIM"}}')
    failed_arn=$("${aws[@]}" dynamodb get-item --table-name "$table" --key "$key" \
        --query 'Item.executionId.S' --output text)
    if [ -z "$failed_arn" ] || [ "$failed_arn" = None ]; then
        echo "$event_id: no claim (it failed before ClaimEvent); start it again with its event" >&2
        continue
    fi
    described=$("${aws[@]}" stepfunctions describe-execution --execution-arn "$failed_arn" --output json)
    input=$(jq -r .input <<<"$described")
    base=$(jq -r .name <<<"$described" | sed 's/-redrive-[0-9]*$//' | cut -c1-64)
    n=1
    while "${aws[@]}" stepfunctions describe-execution \
        --execution-arn "${machine/:stateMachine:/:execution:}:$base-redrive-$n" >/dev/null 2>&1; do
        n=$((n + 1))
    done
    name="$base-redrive-$n"
    new_arn="${machine/:stateMachine:/:execution:}:$name"
    values=$(jq -cn --arg new "$new_arn" --arg old "$failed_arn" --arg at "$(date -u +%FT%TZ)" \
        '{":new":{S:$new},":old":{S:$old},":at":{S:$at}}')
    if [ "$dry_run" = 1 ]; then
        echo "would redrive $event_id ($failed_arn) as $name"
        continue
    fi
    "${aws[@]}" dynamodb update-item --table-name "$table" --key "$key" \
        --update-expression 'SET executionId = :new, redriveOf = :old, redrivenAt = :at' \
        --condition-expression 'executionId = :old' --expression-attribute-values "$values" \
        >/dev/null || { echo "$event_id: the claim is no longer held by $failed_arn; skipped" >&2; continue; }
    "${aws[@]}" stepfunctions start-execution --state-machine-arn "$machine" --name "$name" \
        --input "$input" --query executionArn --output text
done
