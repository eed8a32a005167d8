_base_ = './efficientmod-xxs_8xb256_in1k.py'

model = dict(
    backbone=dict(arch='xs', drop_path_rate=0.0),
    head=dict(in_channels=288))
