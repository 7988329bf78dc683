"""One-off probe (issue 12, stop 36): the shipped tokenizer's frame encode, eager vs torch.compile of its encoder.

One thread, batch 1, 50 random 64x64 frames, best of 3 passes; prints eager (before / after), compiled, the compile
time and the share of identical tokens. Outputs: encode_compile_probe_2026-12-07.txt. Run from the repository root:
``python benchmarks/results/encode_compile_probe_2026-12-07.py``. Result: not worth a code path (README, Benchmarks).
"""
import time, torch, numpy as np
torch.set_num_threads(1)
from sb3_pvdr.pretrained import resolve
from sb3_pvdr.tokenizer.model import VQTokenizer
tok = VQTokenizer.load(resolve("metaworld-64", "tokenizer")).eval()
rng = np.random.default_rng(0)
# real-ish frames: random uint8 is fine for timing; token equality checked on the same inputs
frames = [torch.from_numpy(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)) for _ in range(50)]
def bench(n=3):
    ts=[]
    for _ in range(n):
        t=time.perf_counter()
        for f in frames: tok.encode(f)
        ts.append((time.perf_counter()-t)/len(frames)*1e3)
    return min(ts)
ref=[tok.encode(f) for f in frames]
e1=bench()
enc=tok.encoder
t=time.perf_counter(); tok.encoder=torch.compile(enc, dynamic=False); tok.encode(frames[0]); ct=time.perf_counter()-t
c1=bench()
same=np.mean([ (tok.encode(f)==r).float().mean().item() for f,r in zip(frames,ref)])
tok.encoder=enc
e2=bench()
print(f"eager {e1:.2f} / {e2:.2f} ms per frame; compiled {c1:.2f} ms; compile {ct:.1f} s; tokens equal {same:.4f}")
