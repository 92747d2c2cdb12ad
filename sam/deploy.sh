#!/usr/bin/env bash
# Deploys upsell-flow to one workload account: build, deploy the SAM stack with the account's
# CloudFormation execution role, upload the knowledge base and start its ingestion jobs.
#
#   sam/deploy.sh --account dev|test|prod [--profile NAME] [--skip-build] [--skip-kb] [--dry-run]
#                 [-- extra sam deploy arguments]
#
# Credentials: an AWS CLI profile that assumes the account's `upsell-flow-deployment` role
# (default profile name: upsell-<account>; see docs/deployment.md). Account ids and the Region
# come from sam/accounts/accounts.env (or the UPSELL_ACCOUNT_ID_* / UPSELL_REGION environment).
# --dry-run prints every command instead of running it and needs no credentials.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "deploy.sh: $*" >&2; exit 1; }

account='' profile='' skip_build=0 skip_kb=0 dry_run=0 extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --account) account=${2:-}; shift 2 ;;
        --account=*) account=${1#*=}; shift ;;
        --profile) profile=${2:-}; shift 2 ;;
        --skip-build) skip_build=1; shift ;;
        --skip-kb) skip_kb=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "deploy.sh: unknown argument: $1" >&2; usage ;;
    esac
done
case "$account" in
    dev|test|prod) ;;
    '') echo "deploy.sh: --account is required" >&2; usage ;;
    *) die "--account must be dev, test or prod, not '$account'" ;;
esac

# shellcheck disable=SC1091
[ -f "$here/accounts/accounts.env" ] && . "$here/accounts/accounts.env"
upper=$(echo "$account" | tr '[:lower:]' '[:upper:]')
id_var="UPSELL_ACCOUNT_ID_$upper"
account_id=${!id_var:-}
region=${UPSELL_REGION:-us-east-1}
profile=${profile:-upsell-$account}
[[ "$account_id" =~ ^[0-9]{12}$ ]] || die "$id_var is not a 12-digit account id (set it in sam/accounts/accounts.env)"
if [[ "$account_id" =~ ^0000000000 ]] && [ $dry_run -eq 0 ]; then
    die "$id_var is still the placeholder $account_id; put the real account id in sam/accounts/accounts.env"
fi

stack="upsell-flow-$account"
artifacts="upsell-flow-artifacts-$account_id-$region"
cfn_role="arn:aws:iam::$account_id:role/upsell-flow-cfn-execution"

run() {
    if [ $dry_run -eq 1 ]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

need() { command -v "$1" >/dev/null 2>&1 || [ $dry_run -eq 1 ] || die "$1 is not on PATH ($2)"; }
need sam "pip install aws-sam-cli"
need aws "install the AWS CLI v2"
[ $skip_build -eq 1 ] || need cargo-lambda "pip install cargo-lambda ziglang"

export SAM_CLI_TELEMETRY=0 AWS_REGION="$region" AWS_DEFAULT_REGION="$region"

# Refuse to deploy into the wrong account: the profile must resolve to the expected one.
if [ $dry_run -eq 0 ]; then
    actual=$(aws sts get-caller-identity --profile "$profile" --query Account --output text) \
        || die "profile $profile has no working credentials"
    [ "$actual" = "$account_id" ] || die "profile $profile is account $actual, expected $account_id ($account)"
else
    run aws sts get-caller-identity --profile "$profile" --query Account --output text
fi

cd "$here"
if [ $skip_build -eq 0 ]; then
    run sam build --config-env "$account"
fi
run sam deploy --config-env "$account" --profile "$profile" --region "$region" \
    --stack-name "$stack" --s3-bucket "$artifacts" --role-arn "$cfn_role" \
    --no-fail-on-empty-changeset ${extra[@]+"${extra[@]}"}

[ $skip_kb -eq 1 ] && exit 0

output() {
    aws cloudformation describe-stacks --profile "$profile" --region "$region" --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
if [ $dry_run -eq 1 ]; then
    bucket="<KnowledgeBaseBucketName>" kb_id="<KnowledgeBaseId>" sources="<DataSourceIds>"
else
    bucket=$(output KnowledgeBaseBucketName)
    kb_id=$(output KnowledgeBaseId)
    sources=$(output KnowledgeBaseDataSourceIds)
fi

# The bucket mirrors knowledge-base/: one prefix per data source, with the metadata sidecars.
for prefix in catalogue brand past-messages; do
    run aws s3 sync "$repo/knowledge-base/$prefix/" "s3://$bucket/$prefix/" --delete \
        --profile "$profile" --region "$region"
done
IFS=',' read -r -a source_ids <<< "$sources"
for ds in "${source_ids[@]}"; do
    run aws bedrock-agent start-ingestion-job --knowledge-base-id "$kb_id" --data-source-id "$ds" \
        --profile "$profile" --region "$region"
done
if [ $dry_run -eq 1 ]; then
    echo "deploy.sh: dry run for $stack in $account_id ($region): nothing was deployed"
else
    echo "deploy.sh: $stack deployed to $account_id ($region); ingestion jobs started for knowledge base $kb_id"
fi
