import torch, gpufl, sys, time
gpufl.init(app_name="probe", log_dir=sys.argv[1])
x = torch.randn(256, 256, device="cuda")
for _ in range(10): x = torch.relu(x @ x)
torch.cuda.synchronize()
from torch.profiler import profile, ProfilerActivity
t=time.time()
with profile(activities=[ProfilerActivity.CUDA]) as p:
    for _ in range(50): x = torch.relu(x @ x)
    torch.cuda.synchronize()
ev=[e for e in p.events() if e.device_type.name=="CUDA"]
print("PROFILER kernels", len(ev), "in", time.time()-t)
for _ in range(20): x = torch.relu(x @ x)
torch.cuda.synchronize()
gpufl.shutdown()
import glob
n=sum(l.startswith(b'{"type":"kernel"') for f in glob.glob(sys.argv[1]+"/*device*") for l in open(f,'rb'))
print("GPUFL kernels", n)
