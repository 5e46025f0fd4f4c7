#!/usr/bin/env bash
# The main job, from nothing (README "Two commands"):
#   bash scripts/quickstart.sh            install, start Label Studio, create a digits project linked to it, run a
#                                         round, print where annotators open the tasks
#   bash scripts/quickstart.sh --auto N   the same, then N rounds answered by a simulated annotator through Label
#                                         Studio (`activeadv run --auto-annotate 1.0`), and the learning curve
#   bash scripts/quickstart.sh --serve    the same, then `activeadv serve` beside Label Studio (webhook and ML backend
#                                         registered): you label in the browser, rounds follow by themselves
#   bash scripts/quickstart.sh --stop     stop the service (if any) and the Label Studio server
# Safe to re-run: every step finds what the last run left (venvs, server, project, rounds) and goes on from there.
#
# Environment (all optional):
#   LS_PORT=8080                 Label Studio's port on 127.0.0.1 (first start; a running server keeps its port)
#   QS_DIR=./demo                workdir: the SQLite database (activeadv.db) and model checkpoints
#   QS_PROJECT=digits-demo       project name
#   QS_QUERY=20                  items per round (and the random seed set)
#   QS_SEED=sim|manual           sim (default): the seed tasks are answered by the simulated annotator so that the
#                                model can train and the tasks you get carry its guesses; manual: label them yourself
#   QS_TRAIN_ARGS="..."          extra training options for `activeadv init` (e.g. "--min-steps 100" on a slow machine)
#   QS_SERVE_PORT=9090           --serve: the service's port on 127.0.0.1 (Label Studio calls it there)
#   ACTIVEADV_HOME=~/.activeadv  where Label Studio's virtualenv and data live
# The API token is generated at the first start into $ACTIVEADV_HOME/ls-data/token (0600) and never printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=setup
AUTO_ROUNDS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --auto) MODE=auto; AUTO_ROUNDS=${2:?--auto needs a number of rounds}; shift 2 ;;
    --auto=*) MODE=auto; AUTO_ROUNDS=${1#--auto=}; shift ;;
    --serve) MODE=serve; shift ;;
    --stop) MODE=stop; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "quickstart.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$AUTO_ROUNDS" in ''|*[!0-9]*) echo "quickstart.sh: --auto needs a whole number of rounds" >&2; exit 2 ;; esac

export ACTIVEADV_HOME=${ACTIVEADV_HOME:-$HOME/.activeadv}
LS_PORT=${LS_PORT:-8080}
QS_DIR=${QS_DIR:-$ROOT/demo}
QS_PROJECT=${QS_PROJECT:-digits-demo}
QS_QUERY=${QS_QUERY:-20}
QS_SEED=${QS_SEED:-sim}
QS_SERVE_PORT=${QS_SERVE_PORT:-9090}
# The local server's own token file is the token: a LABEL_STUDIO_API_KEY / LABEL_STUDIO_URL meant for another
# server must not leak into this demo.
unset LABEL_STUDIO_API_KEY LABEL_STUDIO_URL ACTIVEADV_LS_DATA_DIR
AA="$ROOT/.venv/bin/activeadv"
step() { printf '\n==> %s\n' "$*"; }

if [ "$MODE" = stop ]; then
  if [ -x "$AA" ]; then "$AA" serve stop; "$AA" labelstudio stop; else echo "nothing to stop (activeadv is not installed)"; fi
  exit 0
fi

step "1/5 activeadv into ./.venv (scripts/setup.sh)"
bash scripts/setup.sh

step "2/5 Label Studio into its own virtualenv ($ACTIVEADV_HOME/ls-venv)"
"$AA" labelstudio install --version "${LABEL_STUDIO_VERSION:-1.23.2}"

step "3/5 Label Studio server (first start ~1 min: database migrations)"
"$AA" labelstudio start --port "$LS_PORT" >/dev/null
LS_JSON=$("$AA" labelstudio status --json)
field() { printf '%s' "$LS_JSON" | "$ROOT/.venv/bin/python" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
LS_URL=$(field url)
LS_DATA=$(field data_dir)
echo "Label Studio is UP at $LS_URL (data $LS_DATA)"

step "4/5 project '$QS_PROJECT' on the built-in digits, linked to Label Studio"
mkdir -p "$QS_DIR"
export ACTIVEADV_DATABASE_URL="sqlite:///$(cd "$QS_DIR" && pwd)/activeadv.db"
export ACTIVEADV_PROJECT="$QS_PROJECT"
# shellcheck disable=SC2086  # QS_TRAIN_ARGS is a list of options
"$AA" init "$QS_PROJECT" --dataset digits --label-studio "$LS_URL" -q ${QS_TRAIN_ARGS:-}

# How far did earlier runs get?  rounds / trained rounds / unfinished rounds, from the database.
progress() {
  "$AA" status --json | "$ROOT/.venv/bin/python" -c '
import json, sys
s = json.load(sys.stdin)
r = s["rounds"]
print(len(r), sum(x["labels"] is not None for x in r), sum(x["state"] != "done" for x in r))'
}

step "5/5 first rounds: a random seed set, then DFAL picks the items the model is least sure of"
read -r N_ROUNDS N_TRAINED N_OPEN <<<"$(progress)"
if [ "$N_ROUNDS" -eq 0 ]; then
  "$AA" round --initial "$QS_QUERY" --query-size "$QS_QUERY" -q        # seed: random tasks in Label Studio
  read -r N_ROUNDS N_TRAINED N_OPEN <<<"$(progress)"
fi
if [ "$N_TRAINED" -eq 0 ] && [ "$QS_SEED" = manual ]; then
  echo "The seed tasks wait for you (QS_SEED=manual): label them, then run \`activeadv round\`."
elif [ "$N_TRAINED" -eq 0 ] || [ "$N_OPEN" -gt 0 ]; then
  if [ "$N_TRAINED" -eq 0 ]; then
    echo "A simulated annotator answers the $QS_QUERY random seed tasks through Label Studio's API (demo only;"
    echo "QS_SEED=manual leaves them to you), so that the model can train and your tasks carry its guesses:"
    "$AA" annotate-sim --accuracy 1.0 -q
  fi
  # sync, train, evaluate, rank, push.  --random-until 0: the demo shows DFAL's picks at once; a real project keeps
  # the default, one random round after a seed set this small (docs/results.md, "A random cold start")
  "$AA" round --strategy dfal --query-size "$QS_QUERY" --random-until 0 -q
else
  echo "already done by an earlier run (see status below); new rounds: \`activeadv run\` or --auto N"
fi

if [ "$MODE" = auto ] && [ "$AUTO_ROUNDS" -gt 0 ]; then
  step "--auto $AUTO_ROUNDS: the simulated annotator answers each round's tasks in Label Studio"
  "$AA" run --rounds "$AUTO_ROUNDS" --strategy dfal --query-size "$QS_QUERY" --min-new-labels "$QS_QUERY" \
      --auto-annotate 1.0 --poll-seconds 2 -q
fi

if [ "$MODE" = serve ]; then
  step "--serve: activeadv serve on 127.0.0.1:$QS_SERVE_PORT (webhook + ML backend on the Label Studio project)"
  # The webhook secret is generated into $ACTIVEADV_HOME/serve/webhook-secret (0600) and never printed.
  "$AA" serve --port "$QS_SERVE_PORT" --strategy dfal --query-size "$QS_QUERY" --min-new-labels "$QS_QUERY" \
      --detach --register
  "$AA" serve status
fi

step "status"
"$AA" status

LS_PID=$("$AA" status --json | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["label_studio"]["project_id"])')
HOME_SHOWN=${LS_DATA/#$HOME/\~}
cat <<EOF

Annotate in Label Studio: $LS_URL/projects/$LS_PID/data
  username: admin@activeadv.local
  password: cat $HOME_SHOWN/admin-password
  API token (scripts, SDK): export LABEL_STUDIO_API_KEY=\$(cat $HOME_SHOWN/token)
The model's guess is pre-selected on each task; pick the right digit and Submit (or Skip).
EOF
if [ "$MODE" = serve ]; then
  SERVE_LOG_SHOWN=${ACTIVEADV_HOME/#$HOME/\~}/serve/serve.log
  cat <<EOF

Rounds follow by themselves: activeadv serve (http://127.0.0.1:$QS_SERVE_PORT) gets each label through Label Studio's
webhook, stores it, and after $QS_QUERY new labels trains, ranks and pushes the next $QS_QUERY tasks, best first
(reload the task list, or keep using "Label All Tasks"). Nothing to type between rounds.
  .venv/bin/activeadv serve status      # events, syncs, rounds, last error; log: $SERVE_LOG_SHOWN
  ACTIVEADV_DATABASE_URL=$ACTIVEADV_DATABASE_URL .venv/bin/activeadv status
Stop the service and the server: bash scripts/quickstart.sh --stop
EOF
  exit 0
fi
cat <<EOF

Then, to learn from your labels:
  source .venv/bin/activate
  export ACTIVEADV_DATABASE_URL=$ACTIVEADV_DATABASE_URL
  activeadv run --rounds 3 --min-new-labels $QS_QUERY    # waits for your labels, trains, pushes the next tasks
  activeadv status                                # labels, accuracy per round, Label Studio's open tasks
Stop the server: bash scripts/quickstart.sh --stop
EOF
