"""The seed CNN in PyTorch, timed like bench/cnnspeed: one training epoch over MNIST's 60,000
training images (Adam, batch 32) and inference at batch 256 over the 10,000 test images.
Prints one JSON line. Usage: cnn_torch.py MNIST_DIR THREADS [EPOCHS]"""
import gzip, json, struct, sys, time

import numpy as np
import torch
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def main():
    folder, threads = sys.argv[1], int(sys.argv[2])
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    xtr = torch.tensor(idx(f"{folder}/train-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).unsqueeze(1)
    ytr = torch.tensor(idx(f"{folder}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xte = torch.tensor(idx(f"{folder}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).unsqueeze(1)
    yte = torch.tensor(idx(f"{folder}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(13 * 13 * 32, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    epoch_seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(xtr))
        net.train()
        for lo in range(0, len(xtr), 32):
            idxs = perm[lo:lo + 32]
            opt.zero_grad()
            loss = loss_fn(net(xtr[idxs]), ytr[idxs])
            loss.backward()
            opt.step()
        epoch_seconds.append(time.perf_counter() - start)
    net.eval()
    best = 0.0
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            for lo in range(0, len(xte), 256):
                net(xte[lo:lo + 256])
            best = max(best, len(xte) / (time.perf_counter() - start))
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    print(json.dumps({"engine": "pytorch " + torch.__version__, "threads": threads, "epoch_seconds": epoch_seconds,
                      "infer_images_per_second": best, "test_accuracy": acc}))


if __name__ == "__main__":
    main()
