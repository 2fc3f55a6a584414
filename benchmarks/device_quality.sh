#!/bin/bash
# device call 1 (benchmarks/quality.py on the GPU machine, carrying .gpu/{fmnist,pack}): rebuild the demo snapshot, smoke-test every family on the GPU, launch the trainings
export PYTHONPATH=$PWD PRODUCTGEN_FASHION_MNIST_DIR=$PWD/.gpu/fmnist HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
start=$(date +%s); Q=/root/q; mkdir -p $Q
nvidia-smi -L; nproc; python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())"
python3 benchmarks/device_snapshot.py unpack .gpu/pack $Q/snap --build $Q/build || exit 1
echo "unpacked after $(( $(date +%s) - start )) s"
python3 - <<'PY' 2>&1 | tail -20
import dataclasses, time, torch
from pathlib import Path
from productgen.train import train, train_config
for fam in ["cgan", "vaegan", "stylegan", "dcgan", "cgan:wgan-gp"]:
    f, _, loss = fam.partition(":")
    t = time.time()
    c = dataclasses.replace(train_config("gpu", family=f, loss=loss or None, device="cuda"), max_steps=20, max_minutes=None)
    r = train(Path("/root/q/snap"), Path(f"/root/q/smoke-{f}-{loss}"), c)
    print("smoke", fam, r.metrics, round(r.images_per_s), "img/s", round(time.time() - t, 1), "s", flush=True)
PY
echo "smoke done after $(( $(date +%s) - start )) s"
setsid nohup python3 benchmarks/quality.py $Q/snap --train cvae vaegan stylegan dcgan cgan cgan:wgan-gp \
  --minutes 10 --parallel 6 --threads 2 --cores 0-11 --out $Q/cpu --no-evaluate > $Q/cpu.log 2>&1 < /dev/null &
setsid nohup python3 benchmarks/quality.py $Q/snap --train cgan vaegan stylegan --preset gpu --device cuda \
  --minutes 15 --parallel 3 --threads 1 --cores 12-14 --out $Q/gpu --no-evaluate > $Q/gpu.log 2>&1 < /dev/null &
sleep 100; cat $Q/cpu.log $Q/gpu.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
while [ $(( $(date +%s) - start )) -lt 575 ]; do sleep 5; done
ls $Q/cpu $Q/gpu; for f in $Q/cpu/*.log $Q/gpu/*.log; do echo "$f: $(tail -c 300 $f)"; done
