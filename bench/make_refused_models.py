"""The models a worker and `deploy` must refuse, as real H2O MOJOs: made once, kept under tests/models/.

    .venv/bin/python bench/make_refused_models.py

GLMs on data/iris.csv: a regression over the four features (`regression`), a
classifier over three of them (`three_features`), a classifier over the
four whose classes are not the species (`not_iris_classes`), and an iris
classifier trained on shuffled species, right on about a third of the data
(`poor`: below IRIS_MIN_ACCURACY).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import h2o
from h2o.estimators import H2OGeneralizedLinearEstimator

REPO = Path(__file__).resolve().parent.parent
FOUR = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MODELS = [  # (name, features, response, family)
    ("regression", FOUR, "petal_area", "gaussian"),
    ("three_features", FOUR[:3], "species", "multinomial"),
    ("not_iris_classes", FOUR, "is_setosa", "binomial"),
    ("poor", FOUR, "shuffled_species", "multinomial"),
]


def main() -> None:
    h2o.init(nthreads=1, max_mem_size="512M")
    h2o.no_progress()
    try:
        frame = h2o.import_file(str(REPO / "data" / "iris.csv"))
        frame["petal_area"] = frame["petal_length"] * frame["petal_width"]
        frame["is_setosa"] = (frame["species"] == "setosa").ifelse("yes", "no").asfactor()
        species = h2o.as_list(frame["species"], use_pandas=False, header=False)
        random.Random(1).shuffle(species)
        frame = frame.cbind(h2o.H2OFrame(species, column_names=["shuffled_species"]).asfactor())
        for name, features, response, family in MODELS:
            out = REPO / "tests" / "models" / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            model = H2OGeneralizedLinearEstimator(family=family, seed=1, model_id=f"GLM_{name}")
            model.train(x=features, y=response, training_frame=frame)
            model.download_mojo(str(out))
            card = {
                "modelId": f"GLM_{name}",
                "algorithm": "glm",
                "h2oVersion": h2o.__version__,
                "features": features,
                "response": response,
                "purpose": "a model the app must refuse (tests)",
            }
            (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
            (out / "h2o-genmodel.jar").symlink_to("../../../mojo/h2o-genmodel.jar")
            print(f"{name}: {out}")
    finally:
        h2o.cluster().shutdown()


if __name__ == "__main__":
    main()
