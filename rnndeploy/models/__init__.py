"""Reference model zoo (torch). NOT importable on the deploy side.

Interface contract (other stages rely on it; change it only together with them):

    build_model(model_cfg: Mapping, data_info: Mapping) -> ZooModel
        model_cfg  the recipe's [model] table (family, cell, sizes, ...)
        data_info  facts from the dataset: input_size / n_outputs / vocab sizes /
                   num_classes / special token ids / normalisation statistics

    class ZooModel(torch.nn.Module):
        config: dict                       resolved model config (JSON-able)
        data_info: dict
        def spec(self) -> rnndeploy.spec.ModelSpec
        def graph_module(self, graph="model", with_state=False) -> torch.nn.Module
            a module whose forward takes the graph's spec inputs positionally, in
            spec order, and returns a tuple of the spec outputs in spec order: the
            thing export traces and the torch runner runs.
        def example_inputs(self, graph="model", batch=2, seq=7, with_state=False,
                           seed=0) -> dict[str, torch.Tensor]   keyed by spec names
"""
