"""The reinforcement-learning stage (``train``, :mod:`.train_stage`): multi-agent PPO (:mod:`.ppo`; one update in
:mod:`.update`, its maths in :mod:`.ppo_math`, its bookkeeping in :mod:`.ppo_records`), rollouts
(:mod:`.rollout`), seats and opponents (:mod:`.seats`), learners (:mod:`.learners`), the self-play league
(:mod:`.league`) and the Stable-Baselines3 backend (:mod:`.sb3_backend`)."""
