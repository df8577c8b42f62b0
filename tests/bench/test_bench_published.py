"""``python -m ecgnb.bench published`` end to end against small stand-ins of the published code
(their entry points and call patterns, not their networks), so that a change of a function the
bench replaces or calls cannot break it unseen."""
from pathlib import Path

import pytest

from ecgnb.bench.__main__ import main

TS2VEC = '''
import numpy as np
import torch


class TS2Vec:
    """The published entry point: fit draws four scalar crop extents per batch and the
    per-series offsets with np.random.randint, then one AdamW step."""

    def __init__(self, input_dims, output_dims=320, hidden_dims=64, depth=10, device="cuda",
                 lr=0.001, batch_size=16, max_train_length=None, temporal_unit=0):
        self.net = torch.nn.Conv1d(input_dims, output_dims, 3, padding=1).to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=lr)
        self.batch_size, self.device, self.n_epochs = batch_size, device, 0

    def fit(self, train_data, n_epochs=None):
        x = torch.from_numpy(train_data).float().transpose(1, 2)  # [N, 1, T]
        while self.n_epochs < n_epochs:
            for start in range(0, len(x), self.batch_size):
                xb, length = x[start:start + self.batch_size].to(self.device), x.shape[-1]
                crop_l = np.random.randint(low=2, high=length + 1)
                left = np.random.randint(length - crop_l + 1)
                eleft = np.random.randint(left + 1)
                eright = np.random.randint(low=left + crop_l, high=length + 1)
                np.random.randint(low=-eleft, high=length - eright + 1, size=xb.size(0))
                loss = self.net(xb[..., eleft:eright]).pow(2).mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            self.n_epochs += 1
        return []
'''
LOAD_DATASET = '''
import torch


class Load_Dataset(torch.utils.data.Dataset):
    def __init__(self, dataset, config, training_mode):
        self.x, self.y = dataset["samples"].float(), dataset["labels"].long()
        self.aug1 = self.x * 2.0
        self.aug2 = self.x + 0.1 * torch.randn_like(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index], self.aug1[index], self.aug2[index]

    def __len__(self):
        return len(self.x)
'''
MODEL = '''
import torch


class base_Model(torch.nn.Module):
    def __init__(self, configs):
        super().__init__()
        self.conv = torch.nn.Conv1d(configs.input_channels, configs.final_out_channels,
                                    configs.kernel_size, stride=configs.stride)

    def forward(self, x):
        features = self.conv(x)
        return features.mean(-1), features
'''
TC = '''
import torch


class TC(torch.nn.Module):
    def __init__(self, configs, device):
        super().__init__()
        self.project = torch.nn.Linear(configs.final_out_channels, configs.TC.hidden_dim)

    def forward(self, features_aug1, features_aug2):
        z1, z2 = self.project(features_aug1.mean(-1)), self.project(features_aug2.mean(-1))
        return (z1 - z2).pow(2).mean(), z1
'''
TRAINER = '''
def model_train(model, temporal_contr_model, model_optimizer, temp_cont_optimizer, criterion,
                train_loader, config, device, training_mode):
    for data, labels, aug1, aug2 in train_loader:
        model_optimizer.zero_grad()
        temp_cont_optimizer.zero_grad()
        _, features1 = model(aug1.to(device))
        _, features2 = model(aug2.to(device))
        loss, _ = temporal_contr_model(features1, features2)
        loss.backward()
        model_optimizer.step()
        temp_cont_optimizer.step()
    return loss.item(), 0.0
'''


def write(root: Path, files: dict) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.slow
def test_published_bench_runs_against_stand_ins_of_both_published_codes(tmp_path, capsys):
    ts2vec = write(tmp_path / "ts2vec", {"ts2vec.py": TS2VEC})
    tstcc = write(tmp_path / "TS-TCC", {"dataloader/dataloader.py": LOAD_DATASET,
                                         "models/model.py": MODEL, "models/TC.py": TC,
                                         "trainer/trainer.py": TRAINER})
    main(["published", "--ts2vec-code", str(ts2vec), "--tstcc-code", str(tstcc),
          "--batches", "1", "--repeats", "1", "--batch-size", "8", "--length", "256",
          "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("machine: ")
    rows = {line.split()[0]: line for line in out[3:5]}
    assert set(rows) == {"ts2vec", "tstcc"}
    assert all(line.count("x") >= 2 for line in rows.values())  # both ratios printed
    assert out[-1].startswith("(published TS-TCC draws its augmented views once per run")
