#!/usr/bin/env bash
# The skills benchmark for emergent-ability distillation (docs/tasks.md): a teacher trained from scratch
# on seeded skill tasks (arithmetic with digit-by-digit rationales, string transforms, mapping induction),
# then students 6.6x smaller trained on (a) gold answers only, (b) the teacher's answers, (c) the teacher's
# chain-of-thought rationales, (d) in-context-learning-format teacher data, (e) (c) plus token-level KD
# from the teacher, (f) step-by-step multi-task records (the teacher's answers and, behind the trigger,
# its rationales). Everything is evaluated with `llmpress eval` on held-out items (zero-shot, mapping
# items with their own demonstrations). Prints one Markdown table: exact match per family, stderr beside.
#
#   bench/skills.sh [LLMPRESS_BINARY]
#
# Environment: SHARED (../shared), THREADS (2), N_TRAIN (teacher items per family, 2000), N_STUDENT
# (student questions per family, 1000: the first of the teacher's), N_EVAL (100),
# TEACHER_STEPS (1200), STUDENT_STEPS (600), WORK (/tmp/llmpress-bench-skills). Data files already written
# and finished trainings (their logs end with the time line) are kept when the script is run again in
# the same WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
L=$(realpath "${1:-build/llmpress}")
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
N_TRAIN=${N_TRAIN:-2000}
N_STUDENT=${N_STUDENT:-1000}
N_EVAL=${N_EVAL:-100}
TEACHER_STEPS=${TEACHER_STEPS:-1200}
STUDENT_STEPS=${STUDENT_STEPS:-600}
WORK=${WORK:-/tmp/llmpress-bench-skills}
TOKENIZER="$SHARED/models/stories260K/tok512.model"
TRIGGER="Let's think step by step."
mkdir -p "$WORK"
cd "$WORK"

config() {  # file hidden intermediate layers heads
  cat > "$1" <<JSON
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": $2,
 "intermediate_size": $3, "num_hidden_layers": $4, "num_attention_heads": $5, "num_key_value_heads": $5,
 "head_dim": 32, "hidden_act": "silu", "max_position_embeddings": 512, "rms_norm_eps": 1e-05,
 "rope_theta": 10000.0, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
JSON
}
config teacher.json 192 512 6 6
config student.json 96 256 3 3
timed() {  # name command... : runs it, prints "name: time and peak memory" (kept from an earlier run)
  local name=$1; shift
  if grep -q "^time .* s, peak" "$name.log" 2> /dev/null; then echo "$name: $(tail -1 "$name.log") (earlier run)"; return; fi
  /usr/bin/time -f "time %e s, peak %M KiB" "$@" > "$name.log" 2>&1 || { tail -20 "$name.log"; exit 1; }
  echo "$name: $(tail -1 "$name.log")"
}
once() {  # output command... : runs the command unless its output is already there
  local output=$1; shift
  [ -s "$output" ] || "$@"
}
TRAIN_FLAGS=(--tokenizer "$TOKENIZER" -t "$THREADS" --bf16 --lr 2e-3 --min-lr -1 --weight-decay 0.1 --no-progress)
STUDENT_FLAGS=(--seqlen 256 -b 16 "${TRAIN_FLAGS[@]}")

# Tasks: training items, and held-out items none of whose prompts were trained on.
MAIN=addition,subtraction,reverse,sort,count,swapcase
"$L" gen-tasks -n "$N_TRAIN" --seed 1 --family "$MAIN" -o train-main.jsonl
"$L" gen-tasks -n "$N_TRAIN" --seed 1 --family mapping -o train-mapping.jsonl
cat train-main.jsonl train-mapping.jsonl > train.jsonl
# Each family is one seeded stream: -n N_STUDENT gives the first items of the teacher's.
"$L" gen-tasks -n "$N_STUDENT" --seed 1 --family "$MAIN" -o student-main.jsonl
"$L" gen-tasks -n "$N_STUDENT" --seed 1 --family mapping -o student-mapping.jsonl
cat student-main.jsonl student-mapping.jsonl > student.jsonl
"$L" gen-tasks -n "$N_EVAL" --seed 2 --exclude train.jsonl -o heldout.jsonl

# The teacher: gold answers, gold rationales behind the trigger, 3-shot prompts and some TinyStories
# text, from scratch (rows of 512: mapping rationales behind six demonstrations are long).
"$L" gen-data --mode gold --tasks train.jsonl --shots -1 -o teacher-answers.jsonl
"$L" gen-data --mode gold --tasks train.jsonl --shots -1 --trigger "$TRIGGER" -o teacher-cot.jsonl
"$L" gen-data --mode gold --tasks train-main.jsonl --shots 3 -o teacher-icl.jsonl
python3 -c 'import json, sys
for line in open(sys.argv[1]):
    if line.strip(): print(json.dumps({"text": line.strip()}))' "$SHARED/data/tinystories-calib.txt" > teacher-text.jsonl
cat teacher-answers.jsonl teacher-cot.jsonl teacher-icl.jsonl teacher-text.jsonl > teacher-train.jsonl
timed teacher "$L" train --init-config teacher.json -f teacher-train.jsonl -o teacher \
  --steps "$TEACHER_STEPS" --warmup $((TEACHER_STEPS / 20)) --seqlen 512 -b 8 "${TRAIN_FLAGS[@]}"

# Student data (the teacher's generation times are in the gen-*.log files). (c) is (f)'s rationale
# records with the bare question as the prompt, which is what `gen-data --mode cot --question-only`
# writes: one teacher pass instead of two.
G=(-m teacher -b 32 --no-progress)
once a-gold.jsonl "$L" gen-data --mode gold --tasks student.jsonl --question-only -o a-gold.jsonl
once b-answers.jsonl timed gen-b "$L" gen-data "${G[@]}" --mode icl --tasks student.jsonl --shots -1 --question-only -n 24 \
  -o b-answers.jsonl
once f-step.jsonl timed gen-f "$L" gen-data "${G[@]}" --mode cot --tasks student.jsonl --shots -1 --trigger "$TRIGGER" \
  --question-only --step-by-step 1 -n 96 -o f-step.jsonl
python3 -c 'import json, sys
for line in open("f-step.jsonl"):
    r = json.loads(line)
    if "rationale" in r:
        r["prompt"] = r["prompt"][: -len(sys.argv[1]) - 1]
        del r["weight"]
        print(json.dumps(r))' "$TRIGGER" > c-cot.jsonl
once d-main.jsonl timed gen-d-main "$L" gen-data "${G[@]}" --mode icl --tasks student-main.jsonl --shots 3 -n 24 -o d-main.jsonl
once d-mapping.jsonl timed gen-d-mapping "$L" gen-data "${G[@]}" --mode icl --tasks student-mapping.jsonl --shots -1 -n 24 \
  -o d-mapping.jsonl
cat d-main.jsonl d-mapping.jsonl > d-icl.jsonl

for s in a-gold b-answers c-cot d-icl f-step; do
  timed "$s" "$L" train --init-config student.json -f "$s.jsonl" -o "student-$s" \
    --steps "$STUDENT_STEPS" --warmup $((STUDENT_STEPS / 20)) "${STUDENT_FLAGS[@]}"
done
timed e-cot-kd "$L" distill --init-config student.json --teacher teacher -f c-cot.jsonl -o student-e-cot-kd \
  --loss fkl --ce-weight 0.5 --steps "$STUDENT_STEPS" --warmup $((STUDENT_STEPS / 20)) "${STUDENT_FLAGS[@]}"

evaluate() { "$L" eval -m "$1" --tasks heldout.jsonl -b 32 -n 96 --json --no-progress -t "$THREADS" > "$2.json" 2> "$2.eval.log"; }
evaluate teacher teacher
for s in a-gold b-answers c-cot d-icl e-cot-kd f-step; do evaluate "student-$s" "$s"; done
python3 - <<'PY'
import json
rows = [("teacher", "teacher"), ("(a) gold answers", "a-gold"), ("(b) teacher answers", "b-answers"),
        ("(c) teacher rationales", "c-cot"), ("(d) ICL-format teacher data", "d-icl"), ("(e) (c) + token KD", "e-cot-kd"),
        ("(f) step-by-step: answers + (c)", "f-step")]
results = {name: json.load(open(f + ".json"))["results"] for name, f in rows}
families = list(results["teacher"])
print("| model | " + " | ".join(families) + " |")
print("|---|" + "---|" * len(families))
for name, _ in rows:
    cells = []
    for f in families:
        r = results[name][f]
        e = r["exact_match_stderr,none"]
        cells.append("%.2f ± %s" % (r["exact_match,none"], "%.2f" % e if isinstance(e, float) else e))
    print("| %s | %s |" % (name, " | ".join(cells)))
PY

# Batched generation against one prompt at a time: the teacher on the same 20 held-out items per family.
for b in 1 32; do
  "$L" eval -m teacher --tasks heldout.jsonl --limit 20 -b $b -n 96 --no-progress -t "$THREADS" > throughput-b$b.txt 2>&1
  echo "batch $b: $(grep '^generated' throughput-b$b.txt)"
done
