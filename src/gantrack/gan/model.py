"""`GAN(keras.Model)`: one generator and one discriminator trained together by `fit`.

The step follows the TensorFlow DCGAN tutorial: one batch of noise, one generator forward pass,
and both models updated from the same forward pass (two tapes). Losses are passed in
(gantrack.gan.losses); tracking lives in callbacks, never here.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from gantrack.gan import losses
from gantrack.gan.augment import augment
from gantrack.gan.networks import noise_classes
from gantrack.gan.sampling import num_classes
from gantrack.runtime.compat import NoSymbolicBuild


class GAN(NoSymbolicBuild, keras.Model):
    """Wraps generator (B, latent) -> (B, H, W, C) and discriminator (B, H, W, C) -> (B, 1).

    `fit` takes batches of real images scaled to [-1, 1], float32 (B, H, W, C), or, for
    class-conditional networks (see gantrack.gan.networks; num_classes > 0, read from the
    generator), batches of (images, labels (B,) int32); a fake's label is the class its noise
    encodes.
    Metrics per epoch: g_loss, d_loss, d_real and d_fake (mean sigmoid of the logits), and gp
    (the gradient penalty) when gp_weight > 0.

    - n_critic: discriminator steps per generator step. 1 is the tutorial's joint step (both
      networks updated from one forward pass). Above 1, `fit` takes batches of n_critic * B
      images: the discriminator steps on each B-image (strided) slice, with fresh fakes each
      time, then the generator steps once on B fresh noise vectors.
    - gp_weight: weight of losses.gradient_penalty added to the discriminator loss (WGAN-GP).
    - r1_gamma, r1_every: R1 (losses.r1_penalty on the reals, as the discriminator sees them)
      added to the discriminator loss with weight r1_gamma / 2, lazily (Karras et al. 2020,
      StyleGAN2): on every r1_every-th discriminator step only, weighted r1_every times as much.
    - ema_decay, ema_warmup: keep `ema_generator`, an exponential moving average of the
      generator's weights (warm-up decay min(ema_decay, (1 + t) / (ema_warmup + t)) at
      generator step t: an average over the last ~t / (ema_warmup - 1) steps until it reaches
      ema_decay).
    - augment, augment_p: DiffAugment (gantrack.gan.augment): the discriminator sees real and
      fake images through these transforms, each applied with probability augment_p; None:
      adaptive (Karras et al. 2020, ADA), from 0, moved by augment_images' share of the images
      of each step towards holding augment_target = E[sign(D(real) - augment_boundary)] (the
      discriminator's overfitting signal, augment_boundary the loss's: loss_traits.Traits.boundary);
      the `augment_p` variable (checkpointed) and log hold its value.
    Under tf.distribute, `fit` runs the step per replica: losses are scaled by 1/replicas (the
    optimizers sum gradients over replicas) and each replica takes its own slice of one noise
    draw of the global batch, so a step matches the single-device step.
    Mixed float16 needs keras.optimizers.LossScaleOptimizer optimizers (see
    gantrack.gan.training.build_gan).
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        seed: int,
        *,  # all from the train params (training._gan_options): no second set of defaults
        n_critic: int,
        gp_weight: float,
        r1_gamma: float,
        r1_every: int,
        ema_decay: float | None,
        ema_warmup: float,
        augment: tuple[str, ...],
        augment_p: float | None,
        augment_target: float,
        augment_images: int,
        augment_boundary: float | None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = generator.input_shape[-1]
        self.num_classes = num_classes(generator)  # 0: unconditional
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.r1_gamma, self.r1_every = r1_gamma, r1_every
        self.ema_decay, self.ema_warmup = ema_decay, ema_warmup
        self.augment = tuple(augment)
        self.augment_p = augment_p
        if self.augment and augment_p is None:  # adaptive; replicas' updates are averaged
            if augment_boundary is None:
                raise ValueError("adaptive augment_p needs a loss with a real/fake boundary")
            self.augment_p = keras.Variable(0.0, "float32", trainable=False, name="augment_p",
                                            aggregation="mean")  # fmt: skip
            self.augment_target, self.augment_images = augment_target, augment_images
            self.augment_boundary = augment_boundary
        self.ema_generator = None
        if ema_decay is not None:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        self.seed_generator = keras.random.SeedGenerator(seed)
        names = ("g_loss", "d_loss", "d_real", "d_fake") + (("gp",) if gp_weight > 0 else ())
        names += ("r1",) if r1_gamma > 0 else ()
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True  # both networks are; nothing for fit to build from the data

    def compile(self, g_optimizer, d_optimizer, g_loss_fn, d_loss_fn, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_loss_fn = g_loss_fn
        self.d_loss_fn = d_loss_fn

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def adaptive(self) -> bool:
        """Whether augment_p is ADA's variable (moved after every step) rather than fixed."""
        return isinstance(self.augment_p, keras.Variable)

    @property
    def sampler(self) -> keras.Model:
        """The generator that samples, is evaluated and saved: the EMA one when enabled."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def call(self, noise, training=False):
        return self.sampler(noise, training=training)

    def _noise(self, batch):
        """This replica's slice of one (batch * replicas, latent) normal draw."""
        context = tf.distribute.get_replica_context()
        replicas, replica = 1, 0
        if context is not None:
            replicas, replica = context.num_replicas_in_sync, context.replica_id_in_sync_group
        noise = keras.random.normal((batch * replicas, self.latent_dim), seed=self.seed_generator)
        return noise[replica * batch : (replica + 1) * batch]

    def _critic(self, images, labels):
        """The discriminator's logits of images (seen through DiffAugment's transforms when
        augment is set), given their labels when it is conditional."""
        if self.augment:
            images = augment(images, self.augment, self.augment_p, self.seed_generator)
        if self.num_classes:
            return self.discriminator([images, labels], training=True)
        return self.discriminator(images, training=True)

    def _fake(self, batch):
        """A batch of fakes and their labels (the classes their noise encodes, or None)."""
        noise = self._noise(batch)
        labels = None
        if self.num_classes:
            labels = ops.cast(noise_classes(noise, self.num_classes), "int32")
        return self.generator(noise, training=True), labels

    def _d_loss(self, real, fake_images, real_logits, fake_logits):
        """The discriminator's loss of real = (images, labels) and its penalties: (loss,
        {name: (value, weight in its mean: 0 on steps that do not compute it)})."""
        real_images, real_labels = real
        d_loss = self.d_loss_fn(real_logits, fake_logits)
        penalties = {}
        if self.gp_weight > 0:
            alpha = keras.random.uniform(
                (ops.shape(real_images)[0], 1, 1, 1), seed=self.seed_generator
            )
            gp = losses.gradient_penalty(self.discriminator, real_images, fake_images, alpha)
            d_loss = d_loss + self.gp_weight * gp
            penalties["gp"] = (gp, 1.0)
        if self.r1_gamma > 0:
            due = ops.equal(self.d_optimizer.iterations % self.r1_every, 0)
            r1 = self._r1(due, real_images, real_labels)
            d_loss = d_loss + (0.5 * self.r1_gamma * self.r1_every) * r1
            penalties["r1"] = (r1, ops.cast(due, "float32"))
        return d_loss, penalties

    def _r1(self, due, real_images, real_labels):
        """The R1 penalty where due, else 0. With several replicas it is computed every step
        and zeroed where not due: synchronized BatchNorm cannot sync inside a conditional."""

        def penalty():
            return losses.r1_penalty(lambda x: self._critic(x, real_labels), real_images)

        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return penalty() * ops.cast(due, "float32")
        return tf.cond(due, penalty, lambda: ops.zeros((), "float32"))

    @staticmethod
    def _scaled(optimizer, loss):
        """loss / replicas (the optimizer sums replicas' gradients), times the loss scale under
        mixed float16. Call it inside the tape."""
        return optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)

    @staticmethod
    def _apply(optimizer, tape, scaled_loss, variables):
        grads = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def _generator_step(self, batch):
        with tf.GradientTape() as tape:
            fake_logits = self._critic(*self._fake(batch))
            g_loss = self.g_loss_fn(fake_logits)
            scaled = self._scaled(self.g_optimizer, g_loss)
        self._apply(self.g_optimizer, tape, scaled, self.generator.trainable_variables)
        self._update_ema()
        return g_loss

    def _forward(self, real_images, real_labels):
        """Fakes for this replica's noise and the discriminator's logits of real and fake
        (run inside the caller's tapes)."""
        fake_images, fake_labels = self._fake(ops.shape(real_images)[0])
        real_logits = self._critic(real_images, real_labels)
        return fake_images, real_logits, self._critic(fake_images, fake_labels)

    def _critic_step(self, real_images, real_labels):
        with tf.GradientTape() as tape:
            fake_images, real_logits, fake_logits = self._forward(real_images, real_labels)
            d_loss, penalties = self._d_loss(
                (real_images, real_labels), fake_images, real_logits, fake_logits
            )
            scaled = self._scaled(self.d_optimizer, d_loss)
        self._apply(self.d_optimizer, tape, scaled, self.discriminator.trainable_variables)
        return d_loss, penalties, real_logits, fake_logits

    def _joint_step(self, real_images, real_labels):
        """The tutorial's step: both networks updated from one forward pass."""
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images, real_logits, fake_logits = self._forward(real_images, real_labels)
            g_loss = self.g_loss_fn(fake_logits)
            d_loss, penalties = self._d_loss(
                (real_images, real_labels), fake_images, real_logits, fake_logits
            )
            g_scaled = self._scaled(self.g_optimizer, g_loss)
            d_scaled = self._scaled(self.d_optimizer, d_loss)
        self._apply(self.g_optimizer, g_tape, g_scaled, self.generator.trainable_variables)
        self._apply(self.d_optimizer, d_tape, d_scaled, self.discriminator.trainable_variables)
        self._update_ema()
        return g_loss, [(d_loss, penalties, real_logits, fake_logits)]

    def train_step(self, data):
        real_images, real_labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.n_critic == 1:
            g_loss, critic = self._joint_step(real_images, real_labels)
        else:
            # Strided slices: the i-th critic batch is the same images whether the global batch
            # is on one device or split over replicas. Unrolled, without tf.cond: under
            # tf.distribute a conditional update would put a cross-replica sum in control flow.
            k = self.n_critic
            labels = [None if real_labels is None else real_labels[i::k] for i in range(k)]
            critic = [self._critic_step(real_images[i::k], labels[i]) for i in range(k)]
            g_loss = self._generator_step(ops.shape(real_images[::k])[0])
        self.trackers["g_loss"].update_state(g_loss)
        for d_loss, penalties, real_logits, fake_logits in critic:
            self.trackers["d_loss"].update_state(d_loss)
            self.trackers["d_real"].update_state(ops.mean(ops.sigmoid(_f32(real_logits))))
            self.trackers["d_fake"].update_state(ops.mean(ops.sigmoid(_f32(fake_logits))))
            for name, (value, weight) in penalties.items():
                self.trackers[name].update_state(value, sample_weight=weight)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if self.adaptive:
            logs["augment_p"] = self._adapt([logits for _, _, logits, _ in critic], real_images)
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker logs with reduce(MEAN, axis=0), which needs a batch
            # axis: give each scalar one (the result is a scalar again).
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _adapt(self, real_logits, real_images):
        """ADA's update of augment_p after a step: up while the discriminator calls more than
        augment_target of the reals real (on average over E[sign(logit - augment_boundary)]),
        down otherwise, by the step's global images / augment_images; returns the new value."""
        signal = ops.mean(ops.stack([ops.mean(ops.sign(_f32(x) - self.augment_boundary))
                                     for x in real_logits]))  # fmt: skip
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # the global batch's signal: every replica takes the same step
            signal = tf.distribute.get_replica_context().all_reduce("mean", signal)
        images = ops.cast(ops.shape(real_images)[0] * replicas, "float32")
        change = ops.sign(signal - self.augment_target) * images / self.augment_images
        self.augment_p.assign(ops.clip(self.augment_p + change, 0.0, 1.0))
        return ops.convert_to_tensor(self.augment_p)

    def _update_ema(self):
        """After a generator step: ema <- d * ema + (1 - d) * weights, for all weights
        (BatchNorm statistics included), d warming up with the generator's step count."""
        if self.ema_generator is not None:
            update_ema(self.ema_generator, self.generator, self.ema_decay,
                       self.g_optimizer.iterations, self.ema_warmup)  # fmt: skip


def update_ema(average: keras.Model, model: keras.Model, decay: float, steps,
               warmup: float = 10.0) -> None:  # fmt: skip
    """average <- d * average + (1 - d) * model, weight by weight, with the warm-up decay
    d = min(decay, (1 + steps) / (warmup + steps)) after `steps` generator steps."""
    steps = ops.cast(steps, "float32")
    d = ops.minimum(decay, (1.0 + steps) / (warmup + steps))
    for mean, value in zip(average.weights, model.weights, strict=True):
        mean.assign(d * mean + (1.0 - d) * ops.cast(value, mean.dtype))


def _f32(x):
    return ops.cast(x, "float32")
