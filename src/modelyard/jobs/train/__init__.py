"""Train jobs: a catalog model trained on a data set, or a version trained further.

``request.py`` holds what the API takes, ``plan.py`` the planner and its frozen
:class:`~modelyard.jobs.train.plan.TrainPlan`, ``runner.py`` the run in one process and
``distributed.py`` the run over several (DDP or a parameter server).
"""
