"""to_networkx exports the graph with typed attributes."""


def test_whole_graph(tiny_graph):
    g = tiny_graph.to_networkx()
    top = tiny_graph.topology
    assert g.number_of_nodes() == top.count_vectors() + top.count_ops() + top.count_params()
    assert g.number_of_edges() == len(tiny_graph.edges())
    q = g.nodes["blocks.0.attn.hook_q[1,2]"]
    assert (q["node_type"], q["kind"], q["layer"], q["head"], q["position"]) == ("vector", "q", 0, 2, 1)
    assert q["hook"] == "blocks.0.attn.hook_q" and q["norm"] > 0
    edge = g.edges["blocks.0.attn.W_Q[2]", "op:blocks.0.attn.hook_q[1,2]"]
    assert edge == {"role": "parameter", "slot": 0}
    assert g.graph["tokens"] == tiny_graph.tokenization.tokens_visible
    # every op's output is one vector
    for node, data in g.nodes(data=True):
        if data["node_type"] == "operation" and data["kind"] != "tokenize":
            assert [g.edges[node, t]["role"] for t in g.successors(node)] == ["output"]


def test_subgraph_export(tiny_graph):
    g = tiny_graph.to_networkx(layers=[0], heads=[1], positions=[0, 1, 2])
    assert all(d.get("layer") in (None, 0) for _, d in g.nodes(data=True))
    assert "blocks.0.attn.hook_z[2,1]" in g and "blocks.0.attn.hook_z[2,0]" not in g
    assert "blocks.1.ln1.hook_normalized[0]" not in g
