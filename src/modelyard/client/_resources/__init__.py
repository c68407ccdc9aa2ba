"""One class per API resource; a :class:`~modelyard.client.Client` holds one of each."""

from modelyard.client._resources.datasets import Datasets
from modelyard.client._resources.deployments import Deployments
from modelyard.client._resources.jobs import Jobs
from modelyard.client._resources.keys import Keys
from modelyard.client._resources.models import Models
from modelyard.client._resources.principals import Principals

__all__ = ["Datasets", "Deployments", "Jobs", "Keys", "Models", "Principals"]
