"""Encoders over leads: each lead encoded on its own by one network, the outputs joined."""
import numpy as np
import pytest
import torch

import ecgnb.models
from ecgnb.models.leads import LeadWise, join_leads, split_leads

T, N_LEADS, D = 64, 3, 16


@pytest.fixture(scope="module")
def encoder():
    return ecgnb.models.build("ts2vec", device="cpu", seed=0, verbose=False, depth=2,
                              hidden_dims=8, output_dims=D).build(T)


def test_joined_embeddings_are_each_leads_own(encoder):
    x = np.random.default_rng(0).normal(size=(4, N_LEADS, T)).astype(np.float32)
    per_lead = encoder.encode(split_leads(x))                         # [4*C, D]
    concat = join_leads(per_lead, N_LEADS, "concat")
    assert concat.shape == (4, N_LEADS * D)
    np.testing.assert_array_equal(concat[:, D:2 * D], encoder.encode(x[:, 1:2]))
    np.testing.assert_allclose(join_leads(per_lead, N_LEADS, "mean"),
                               np.mean([encoder.encode(x[:, c:c + 1]) for c in range(N_LEADS)],
                                       axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling, dim", [("concat", N_LEADS * D), ("mean", D)])
def test_the_wrapped_network_reads_every_lead(encoder, pooling, dim):
    x = np.random.default_rng(1).normal(size=(4, N_LEADS, T)).astype(np.float32)
    wrapped = LeadWise(encoder.trainable_network().eval(), N_LEADS, pooling)
    assert wrapped.embedding_dim == dim and wrapped.feature_dim == dim
    with torch.no_grad():
        embedding = wrapped.embed(torch.from_numpy(x)).numpy()
        features = wrapped(torch.from_numpy(x))
    np.testing.assert_allclose(embedding, join_leads(encoder.encode(split_leads(x)), N_LEADS,
                                                     pooling), rtol=1e-4, atol=1e-5)
    assert features.shape[:2] == (4, dim)
    with pytest.raises(ValueError, match=r"\[B, 3, T\]"):
        wrapped.embed(torch.zeros(4, 1, T))
    with pytest.raises(ValueError, match="lead_pooling"):
        LeadWise(encoder.trainable_network(), N_LEADS, "max")
