"""Small models the tests share."""

from __future__ import annotations

import minidl as md
from minidl import nn


class SmallCNN(nn.Module):
    """A miniature of GoogLeNet's parts: conv-BN-ReLU, LRN, pools, two branches, dropout, fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.lrn = nn.LocalResponseNorm(5)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.branches = nn.ModuleList(
            [nn.Conv2d(8, 4, 1), nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(8, 4, 1))]
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.4)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.lrn(self.stem(x)))  # N x 8 x 4 x 4
        x = md.concat([b(x) for b in self.branches], axis=1)  # N x 8 x 4 x 4
        return self.fc(self.drop(self.flat(self.gap(x))))  # N x 10
